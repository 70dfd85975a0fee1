"""docformer: bytes of a document → pages → OCR words and lines → DocFormerv2 → fields.

A self-contained library: it knows nothing of Prefect, the database or object storage.
"""

from docformer.document import Document, OCRResult, Page, Word

__all__ = ["Document", "OCRResult", "Page", "Word"]
