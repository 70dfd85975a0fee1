"""Reading documents: bytes → `Document` with rendered RGB pages (docTR's `io` in spirit)."""

from docformer.io.errors import (
    DamagedDocument,
    DocumentError,
    EmptyDocument,
    EncryptedDocument,
    ImageTooLarge,
    TooLarge,
    TooManyPages,
    UnsupportedFormat,
)
from docformer.io.limits import ReadLimits
from docformer.io.reading import read_document, sniff_media_type

__all__ = [
    "DamagedDocument",
    "DocumentError",
    "EmptyDocument",
    "EncryptedDocument",
    "ImageTooLarge",
    "ReadLimits",
    "TooLarge",
    "TooManyPages",
    "UnsupportedFormat",
    "read_document",
    "sniff_media_type",
]
