"""Bytes of a document → `Document` with rendered RGB pages.

The media type comes from the bytes' magic numbers, never from the name: uploads are named by
people and by scanners, and an HTML error page saved as `scan.pdf` must fail as what it is.
"""

from __future__ import annotations

import hashlib

from docformer.document import Document, Page
from docformer.io.errors import EmptyDocument, TooLarge, UnsupportedFormat
from docformer.io.images import read_image_pages
from docformer.io.limits import ReadLimits
from docformer.io.pdf import read_pdf_pages

SUPPORTED = "PDF, TIFF, PNG, JPEG, BMP, WebP, GIF"

# (prefix, media type) for the formats we read.
_MAGIC: list[tuple[bytes, str]] = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"II+\x00", "image/tiff"),  # BigTIFF
    (b"MM\x00+", "image/tiff"),
    (b"BM", "image/bmp"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
]

# Formats people upload by mistake, named so the error message can say what the file is.
_KNOWN_OTHERS: list[tuple[bytes, str]] = [
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document: DOCX, XLSX)"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (DOC, XLS)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript file"),
]


def sniff_media_type(data: bytes) -> str | None:
    """The media type of a supported document from its first bytes, or None."""
    # The PDF header may follow a little junk (some scanners prepend a few bytes).
    if b"%PDF-" in data[:1024]:
        return "application/pdf"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    return None


def _describe_unknown(data: bytes) -> str:
    for magic, what in _KNOWN_OTHERS:
        if data.startswith(magic):
            return what
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "an HTML page (often a login or error page saved instead of the document)"
    if head.startswith(b"<?xml") or head.startswith(b"<svg"):
        return "an XML or SVG file"
    try:
        data[:512].decode("utf-8")
        return "plain text"
    except UnicodeDecodeError:
        return "an unknown binary format"


def read_document(
    data: bytes,
    source: str,
    *,
    limits: ReadLimits | None = None,
    dpi: int = 200,
) -> Document:
    """Read a PDF or raster document into pages of RGB images.

    Born-digital PDF pages come back with `has_text_layer=True` and their words in `page.ocr`;
    the other pages need OCR (`docformer.ocr.ocr_document`). Raises a `DocumentError`
    subclass saying what is wrong with the input and what to do.
    """
    limits = limits or ReadLimits()
    if len(data) > limits.max_bytes:
        raise TooLarge(
            f"{len(data):,} bytes, more than the limit of {limits.max_bytes:,}; split the "
            "document or raise the size limit.",
            source=source,
        )
    if not data.strip():
        raise EmptyDocument(
            "the file is empty (zero bytes or only whitespace); the upload probably failed. "
            "Upload it again.",
            source=source,
        )
    media_type = sniff_media_type(data)
    if media_type is None:
        raise UnsupportedFormat(
            f"the content is {_describe_unknown(data)}, not a document we can read "
            f"({SUPPORTED}), whatever its name says. Export it as PDF or as an image.",
            source=source,
        )

    if media_type == "application/pdf":
        pages = read_pdf_pages(data, source, limits, dpi)
    else:
        pages = [
            Page(index=i, width=image.width, height=image.height, image=image)
            for i, image in enumerate(read_image_pages(data, source, limits))
        ]
    return Document(
        source=source,
        sha256=hashlib.sha256(data).hexdigest(),
        media_type=media_type,
        pages=pages,
    )
