"""Raster documents (TIFF, PNG, JPEG, BMP, WebP, GIF) → RGB page images.

Every frame's declared size is checked against the pixel limit from the file header, before any
pixel is decoded, so a few hundred bytes claiming 50000×50000 pixels cost nothing
(`open_image`); the frames are then decoded one at a time (`iter_image_pages`).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from docformer.io.errors import (
    DamagedDocument,
    DocumentError,
    EmptyDocument,
    ImageTooLarge,
    TooManyPages,
)
from docformer.io.limits import ReadLimits

# Only TIFF pages are document pages; the extra frames of an animated GIF or WebP are not.
MULTI_PAGE_FORMATS = {"TIFF"}


def read_image_pages(data: bytes, source: str, limits: ReadLimits) -> list[Image.Image]:
    """All pages of a raster file as RGB images, upright according to their EXIF orientation."""
    image, _ = open_image(data, source, limits)
    return list(iter_image_pages(image, source, limits))


def open_image(
    data: bytes, source: str, limits: ReadLimits
) -> tuple[Image.Image, list[tuple[int, int]]]:
    """The opened file and each page's pixel size, checked against the page count and the
    per-page pixel limit from the headers: no pixel is decoded."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise _too_large(source, None, limits) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DamagedDocument(
            f"the image header cannot be read ({error}); the file is damaged or incomplete. "
            "Export or scan it again.",
            source=source,
        ) from error

    frames = getattr(image, "n_frames", 1) if image.format in MULTI_PAGE_FORMATS else 1
    if frames > limits.max_pages:
        raise TooManyPages(
            f"{frames} pages, more than the limit of {limits.max_pages}; split the file into "
            "smaller documents or raise the page limit.",
            source=source,
        )
    if frames < 1:
        raise EmptyDocument("the image file holds no pages; check the export.", source=source)

    sizes = []
    for index in range(frames):
        try:
            image.seek(index)  # a TIFF frame's size is in its directory, read without pixels
        except FRAME_ERRORS as error:
            raise _frame_error(source, index, image, limits, error) from error
        width, height = image.size
        if width * height > limits.max_pixels:
            raise _too_large(source, (index, width, height), limits)
        if width == 0 or height == 0:
            raise EmptyDocument(f"page {index + 1} has no pixels.", source=source)
        sizes.append((width, height))
    return image, sizes


def iter_image_pages(image: Image.Image, source: str, limits: ReadLimits) -> Iterator[Image.Image]:
    """The pages of an opened file (`open_image`), decoded one at a time as they are asked for,
    as RGB and upright; nothing here keeps a page once it is given."""
    frames = getattr(image, "n_frames", 1) if image.format in MULTI_PAGE_FORMATS else 1
    try:
        for index in range(frames):
            yield _decode_frame(image, index, source, limits)
    finally:
        image.close()


def _decode_frame(image: Image.Image, index: int, source: str, limits: ReadLimits) -> Image.Image:
    try:
        image.seek(index)
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))
    except FRAME_ERRORS as error:
        raise _frame_error(source, index, image, limits, error) from error


FRAME_ERRORS = (Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError)


def _frame_error(
    source: str, index: int, image: Image.Image, limits: ReadLimits, error: Exception
) -> DocumentError:
    """Pillow's error while reading page `index`, as the document's error."""
    if isinstance(error, Image.DecompressionBombError):
        return _too_large(source, (index, *image.size), limits)
    return DamagedDocument(
        f"page {index + 1} cannot be decoded ({error}); the file is damaged or cut off. "
        "Upload the complete file again.",
        source=source,
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB of any Pillow mode: bilevel, grey, palette, CMYK, alpha (laid on white),
    and 16/32-bit grey, which is scaled into 0–255 rather than clipped to white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in {"I", "F"}:
        values = np.asarray(image, dtype=np.float64)
        # 16-bit samples use 0–65535; 32-bit integer or float images use whatever range they
        # declare, so scale by the nominal 16-bit range when it fits and by the maximum otherwise.
        top = float(values.max(initial=0.0))
        if mode == "F" and top <= 1.0:
            scale = 255.0
        elif top <= 255.0 and not mode.startswith("I;16"):
            scale = 1.0
        elif top <= 65535.0:
            scale = 255.0 / 65535.0
        else:
            scale = 255.0 / top
        grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = image.mode
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        # Transparent pixels often store black; laying them on white keeps text readable.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _too_large(source: str, page: tuple[int, int, int] | None, limits: ReadLimits) -> ImageTooLarge:
    where = f"page {page[0] + 1} declares {page[1]}×{page[2]} pixels" if page else "the image"
    return ImageTooLarge(
        f"{where}, more than the limit of {limits.max_pixels:,} pixels per page (a guard "
        "against decompression bombs); scan at a lower resolution or raise the limit.",
        source=source,
    )
