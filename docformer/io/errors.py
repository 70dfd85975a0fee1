"""Typed reading errors. Each says what is wrong with the document and what to do about it, in
words a person triaging a failed batch can act on; `code` is a stable short name for storage."""

from __future__ import annotations

from typing import ClassVar


class DocumentError(Exception):
    """A document that cannot be read. Retrying will not help; the input must change."""

    code: ClassVar[str] = "document_error"

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        self.message = message
        super().__init__(f"{source}: {message}" if source else message)


class UnsupportedFormat(DocumentError):
    code = "unsupported_format"


class EmptyDocument(DocumentError):
    code = "empty_document"


class DamagedDocument(DocumentError):
    code = "damaged_document"


class EncryptedDocument(DocumentError):
    code = "encrypted_document"


class TooLarge(DocumentError):
    code = "too_large"


class TooManyPages(DocumentError):
    code = "too_many_pages"


class ImageTooLarge(DocumentError):
    code = "image_too_large"


class TooManyPixels(DocumentError):
    """The document's pages together are over the pixel budget of one document."""

    code = "too_many_pixels"


__all__ = [
    "DamagedDocument",
    "DocumentError",
    "EmptyDocument",
    "EncryptedDocument",
    "ImageTooLarge",
    "TooLarge",
    "TooManyPages",
    "TooManyPixels",
    "UnsupportedFormat",
]
