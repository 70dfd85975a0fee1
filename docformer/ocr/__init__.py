"""OCR: page images → words with boxes and reading-order lines (PaddleOCR, offline).

Importing this package is cheap; PaddleOCR is imported when the first engine is built.
"""

from docformer.ocr.engine import OCREngine, get_engine, ocr_document

__all__ = ["OCREngine", "get_engine", "ocr_document"]
