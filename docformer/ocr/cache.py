"""The OCR cache: a document's page is read by PaddleOCR once per engine version.

`OCRCacheStore` is what `docformer.reader.DocumentReader` needs of a cache; `FolderOCRCache`
keeps results in a folder, `flows.ocr_cache.BucketOCRCache` in the artifact bucket.

A folder's layout: `<folder>/<sha256[:2]>/<sha256>.p<page>.<engine hash>.json`, where the engine hash is a
short digest of the engine id (ids hold slashes and versions). Files are written to a temporary
name and renamed, so a run killed mid-write never leaves half a result behind. The flows keep the
same key (sha256, page, engine id) in the artifact bucket instead of a folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Protocol

from docformer.document import OCRResult

logger = logging.getLogger(__name__)


class OCRCacheStore(Protocol):
    """OCR results by (sha256 of the document's bytes, page index, OCR engine id)."""

    def get(self, sha256: str, page: int, engine_id: str) -> OCRResult | None: ...

    def put(self, sha256: str, page: int, engine_id: str, ocr: OCRResult) -> object: ...


class FolderOCRCache:
    """OCR results on disk, one JSON file per (document sha256, page, engine id)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, sha256: str, page: int, engine_id: str) -> Path:
        engine_hash = hashlib.sha256(engine_id.encode()).hexdigest()[:16]
        return self.folder / sha256[:2] / f"{sha256}.p{page}.{engine_hash}.json"

    def get(self, sha256: str, page: int, engine_id: str) -> OCRResult | None:
        """The cached result, or None when absent or unreadable (then it is simply made again)."""
        path = self.path(sha256, page, engine_id)
        if not path.is_file():
            return None
        try:
            return OCRResult.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("%s: unreadable cached OCR (%s); OCRing again", path, error)
            return None

    def put(self, sha256: str, page: int, engine_id: str, ocr: OCRResult) -> Path:
        path = self.path(sha256, page, engine_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(ocr.to_json())
        os.replace(temporary, path)
        return path


__all__ = ["FolderOCRCache", "OCRCacheStore"]
