"""The OCR cache in the artifact bucket: `docformer.reader.DocumentReader`'s cache for the flows.

Keys: `ocr/<engine id>/<sha256>/<page>.json` for the engine's results (and PDF text layers),
`ocr/supplied/<sha256>/<page>.json` for OCR that came with an imported labelled document, kept
apart since no engine of ours produced it. The OCR result goes from digitize's OCR step to its
extraction step through this cache, and it is what lets a re-run or a new model skip OCR.
"""

from __future__ import annotations

import re

from docformer.document import OCRResult
from flows.storage import ObjectMissing, ObjectStore


def ocr_cache_key(engine_id: str, sha256: str, page: int) -> str:
    """`ocr/<engine>/<sha256>/<page>.json`; the engine id's slashes and plus signs become `_`
    so each id is one path segment and no S3 server has to agree on how to escape them."""
    engine = re.sub(r"[^A-Za-z0-9._-]+", "_", engine_id)
    return f"ocr/{engine}/{sha256}/{page}.json"


def supplied_ocr_key(sha256: str, page: int) -> str:
    """Where OCR that came with a labelled document (`<name>.ocr.json`) is kept."""
    return f"ocr/supplied/{sha256}/{page}.json"


class BucketOCRCache:
    """OCR results in a bucket, by (sha256, page, engine id). With `supplied_first`, OCR that
    came with an imported document is returned before the engine's: training learns from the
    words its labels were made against."""

    def __init__(self, store: ObjectStore, bucket: str, *, supplied_first: bool = False):
        self.store = store
        self.bucket = bucket
        self.supplied_first = supplied_first

    def _read(self, key: str) -> OCRResult | None:
        try:
            return OCRResult.from_dict(self.store.get_json(self.bucket, key))
        except ObjectMissing:
            return None

    def get(self, sha256: str, page: int, engine_id: str) -> OCRResult | None:
        if self.supplied_first:
            supplied = self._read(supplied_ocr_key(sha256, page))
            if supplied is not None:
                return supplied
        return self._read(ocr_cache_key(engine_id, sha256, page))

    def put(self, sha256: str, page: int, engine_id: str, ocr: OCRResult) -> None:
        self.store.put_json(self.bucket, ocr_cache_key(engine_id, sha256, page), ocr.to_dict())

    def put_supplied(self, sha256: str, page: int, ocr: OCRResult) -> None:
        self.store.put_json(self.bucket, supplied_ocr_key(sha256, page), ocr.to_dict())


__all__ = ["BucketOCRCache", "ocr_cache_key", "supplied_ocr_key"]
