"""How much a single document may cost to read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadLimits:
    max_bytes: int = 100 * 1024 * 1024
    max_pages: int = 200
    # Pillow's own decompression-bomb threshold: an A3 page scanned at 600 dpi (70 Mpx) fits.
    max_pixels: int = 89_478_485
    # All pages of one document together, as rendered (PDF pages at the dpi they are read at).
    # 200 A4 pages at the OCR dpi of 200 are 200 × 1654 × 2339 = 774 Mpx, so they fit; so do 200
    # US Letter pages (748 Mpx). Held at once as RGB that is about 2.4 GB: without this limit a
    # small PDF of 200 blank posters, each under `max_pixels`, would need tens of GB.
    max_document_pixels: int = 800_000_000
