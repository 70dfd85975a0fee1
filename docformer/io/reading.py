"""Bytes of a document → `Document` with rendered RGB pages, all at once (`read_document`) or
one at a time (`open_document`), after every limit that needs no rendering was checked.

The media type comes from the bytes' magic numbers, never from the name: uploads are named by
people and by scanners, and an HTML error page saved as `scan.pdf` must fail as what it is.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pypdfium2 as pdfium
from PIL import Image

from docformer.document import Document, Page
from docformer.io.errors import EmptyDocument, TooLarge, TooManyPixels, UnsupportedFormat
from docformer.io.images import iter_image_pages, open_image
from docformer.io.limits import ReadLimits
from docformer.io.pdf import iter_pdf_pages, open_pdf

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
    """Read a PDF or raster document into pages of RGB images, every page in memory at once
    (`open_document` gives them one at a time).

    Born-digital PDF pages come back with `has_text_layer=True` and their words in `page.ocr`;
    the other pages need OCR (`docformer.ocr.ocr_document`). Raises a `DocumentError`
    subclass saying what is wrong with the input and what to do.
    """
    pages = open_document(data, source, limits=limits, dpi=dpi)
    return Document(
        source=source, sha256=pages.sha256, media_type=pages.media_type, pages=list(pages)
    )


class PageStream:
    """A document whose limits are checked, its pages rendered only as they are iterated, one
    at a time (`open_document`). It is read once: iterating again gives nothing."""

    def __init__(
        self,
        source: str,
        sha256: str,
        media_type: str,
        sizes: list[tuple[int, int]],
        pages: Iterator[Page],
        close: Callable[[], None],
    ) -> None:
        self.source = source
        self.sha256 = sha256
        self.media_type = media_type
        self.sizes = sizes  # (width, height) of each page as it will be rendered
        self._pages = pages
        self._close = close

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[Page]:
        return self._pages

    def close(self) -> None:
        """Let go of the file before every page was read (closing the PDF or image)."""
        self._close()


def open_document(
    data: bytes,
    source: str,
    *,
    limits: ReadLimits | None = None,
    dpi: int = 200,
) -> PageStream:
    """Check a document against `limits` and return its pages to be rendered one at a time.

    Everything that can be known without rendering is checked here, before any page is
    rendered or decoded: the size in bytes, the format, the page count, each page's pixels
    (PDF pages at `dpi`, from the page tree; raster frames from their headers) and the pixels
    of all pages together (`ReadLimits.max_document_pixels`). Raises a `DocumentError`
    subclass; a page that turns out damaged raises one while the pages are iterated.
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

    pages: Iterator[Page]
    if media_type == "application/pdf":
        pdf, sizes = open_pdf(data, source, limits, dpi)
        pdf_pages = iter_pdf_pages(pdf, source, dpi)
        pages, close, at = pdf_pages, _closer(pdf_pages, pdf), f" at {dpi} dpi"
    else:
        image, sizes = open_image(data, source, limits)
        frames = iter_image_pages(image, source, limits)
        # `map` keeps no page once it is given (a generator's loop variable would).
        pages = map(_image_page, itertools.count(), frames)
        close, at = _closer(frames, image), ""
    sha256 = hashlib.sha256(data).hexdigest()
    stream = PageStream(source, sha256, media_type, sizes, pages, close)
    total = sum(width * height for width, height in sizes)
    if total > limits.max_document_pixels:
        stream.close()
        raise TooManyPixels(
            f"{len(sizes)} pages of {total:,} pixels in all{at}, more than the limit of "
            f"{limits.max_document_pixels:,} pixels per document (about "
            f"{3 * total / 1e9:.1f} GB of page images); split the document into smaller ones "
            "or raise the limit.",
            source=source,
        )
    return stream


def _closer(
    generator: Generator[Any, None, None], file: pdfium.PdfDocument | Image.Image
) -> Callable[[], None]:
    def close() -> None:
        generator.close()
        file.close()  # a generator never started has no `finally` to run

    return close


def _image_page(index: int, image: Image.Image) -> Page:
    return Page(index=index, width=image.width, height=image.height, image=image)
