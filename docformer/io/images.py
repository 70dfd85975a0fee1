"""Raster documents (TIFF, PNG, JPEG, BMP, WebP, GIF) → RGB page images.

Every frame's declared size is checked against the pixel limit from the file header, before any
pixel is decoded, so a few hundred bytes claiming 50000×50000 pixels cost nothing.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from docformer.io.errors import DamagedDocument, EmptyDocument, ImageTooLarge, TooManyPages
from docformer.io.limits import ReadLimits

# Only TIFF pages are document pages; the extra frames of an animated GIF or WebP are not.
MULTI_PAGE_FORMATS = {"TIFF"}


def read_image_pages(data: bytes, source: str, limits: ReadLimits) -> list[Image.Image]:
    """All pages of a raster file as RGB images, upright according to their EXIF orientation."""
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

    pages = []
    for index in range(frames):
        try:
            image.seek(index)
            width, height = image.size
            if width * height > limits.max_pixels:
                raise _too_large(source, (index, width, height), limits)
            if width == 0 or height == 0:
                raise EmptyDocument(f"page {index + 1} has no pixels.", source=source)
            image.load()
            pages.append(to_rgb(ImageOps.exif_transpose(image)))
        except Image.DecompressionBombError as error:
            raise _too_large(source, (index, *image.size), limits) from error
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise DamagedDocument(
                f"page {index + 1} cannot be decoded ({error}); the file is damaged or cut off. "
                "Upload the complete file again.",
                source=source,
            ) from error
    return pages


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
