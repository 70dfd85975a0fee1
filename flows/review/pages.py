"""Page images and OCR words for the review screen, from the object in storage.

A document is read once (its bytes from the bucket, its pages rendered the way OCR saw them,
turned by the OCR's rotation so boxes and image agree) and each page kept under
`$DOCFLOW_HOME/review-cache/<sha256>/` as a JPEG and the page's words as JSON; every later
request for the page is a file read. The words are the OCR the extraction read (the OCR cache
in the artifact bucket, under the engine id recorded on the page), so the words a reviewer
clicks are the words the model saw.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from PIL import Image

from docformer.document import attach_ocr
from docformer.io import ReadLimits, open_document
from docformer.reader import OCR_DPI
from flows.ocr_cache import BucketOCRCache
from flows.storage import ObjectStore

# The longest side of a page as the browser gets it: enough to read a receipt's small print
# when zoomed to a field, small enough to load in a moment. Boxes are sent in page pixels and
# drawn in percent of the page, so the image's own size does not matter to them.
DISPLAY_MAX_SIDE = 1800
CROP_MARGIN = 0.6  # of the box's height, around a field when zoomed to it


@dataclass(frozen=True)
class PageWords:
    width: int
    height: int
    words: list[dict]  # {"text", "box": [x0, y0, x1, y1]} in page pixels, reading order


class PageCache:
    def __init__(
        self,
        store: ObjectStore,
        artifact_bucket: str,
        root: Path,
        max_document_bytes: int,
    ) -> None:
        self.store = store
        self.ocr = BucketOCRCache(store, artifact_bucket)
        self.root = root
        self.max_document_bytes = max_document_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _paths(self, sha256: str, page: int) -> tuple[Path, Path]:
        folder = self.root / sha256
        return folder / f"{page}.jpg", folder / f"{page}.json"

    def _lock(self, sha256: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(sha256, threading.Lock())

    def ensure(self, bucket: str, key: str, sha256: str, engines: dict[int, str]) -> None:
        """Render every page of the document into the cache unless it is there already.
        `engines`: page index -> the OCR engine id its words came from."""
        image_path, _ = self._paths(sha256, 0)
        if image_path.exists():
            return
        with self._lock(sha256):
            if image_path.exists():
                return
            data = self.store.read_bytes(bucket, key, self.max_document_bytes)
            # One page rendered at a time, saved and let go before the next (a long scan
            # would otherwise hold every page at full size).
            document = open_document(
                data, key, limits=ReadLimits(self.max_document_bytes), dpi=OCR_DPI
            )
            folder = self.root / sha256
            folder.mkdir(parents=True, exist_ok=True)
            for page in document:
                engine = engines.get(page.index)
                cached = self.ocr.get(sha256, page.index, engine) if engine else None
                if cached is not None:
                    attach_ocr(page, cached)
                words = page.ocr.words if page.ocr is not None else []
                record = {
                    "width": page.width,
                    "height": page.height,
                    "words": [{"text": w.text, "box": [round(v) for v in w.box]} for w in words],
                }
                jpg, js = self._paths(sha256, page.index)
                image = page.image.convert("RGB")
                image.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE))
                image.save(jpg.with_suffix(".tmp"), "JPEG", quality=85)
                js.write_text(json.dumps(record))
                # the image last: its presence says the page is complete
                jpg.with_suffix(".tmp").replace(jpg)

    def words(self, sha256: str, page: int) -> PageWords | None:
        _, js = self._paths(sha256, page)
        if not js.exists():
            return None
        record = json.loads(js.read_text())
        return PageWords(record["width"], record["height"], record["words"])

    def image_path(self, sha256: str, page: int) -> Path | None:
        path, _ = self._paths(sha256, page)
        return path if path.exists() else None

    def crop(self, sha256: str, page: int, box: tuple[int, int, int, int]) -> bytes | None:
        """JPEG of the part of the page around `box` (page pixels), for the zoomed view."""
        path, words = self.image_path(sha256, page), self.words(sha256, page)
        if path is None or words is None:
            return None
        with Image.open(path) as image:
            scale = image.width / words.width
            x0, y0, x1, y1 = (v * scale for v in box)
            margin = max(y1 - y0, 12 * scale) * CROP_MARGIN
            area = (
                max(0, int(x0 - 4 * margin)),
                max(0, int(y0 - 2 * margin)),
                min(image.width, int(x1 + 4 * margin)),
                min(image.height, int(y1 + 2 * margin)),
            )
            if area[2] <= area[0] or area[3] <= area[1]:
                return None
            out = BytesIO()
            image.crop(area).save(out, "JPEG", quality=90)
            return out.getvalue()


__all__ = ["PageCache", "PageWords"]
