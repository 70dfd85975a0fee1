"""Reading documents: bytes → `Document` with rendered RGB pages (docTR's `io` in spirit)."""

from docformer.io.errors import (
    DamagedDocument,
    DocumentError,
    EmptyDocument,
    EncryptedDocument,
    ImageTooLarge,
    TooLarge,
    TooManyPages,
    TooManyPixels,
    UnsupportedFormat,
)
from docformer.io.limits import ReadLimits
from docformer.io.reading import PageStream, open_document, read_document, sniff_media_type

__all__ = [
    "DamagedDocument",
    "DocumentError",
    "EmptyDocument",
    "EncryptedDocument",
    "ImageTooLarge",
    "PageStream",
    "ReadLimits",
    "TooLarge",
    "TooManyPages",
    "TooManyPixels",
    "UnsupportedFormat",
    "open_document",
    "read_document",
    "sniff_media_type",
]
