"""How much a single document may cost to read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadLimits:
    max_bytes: int = 100 * 1024 * 1024
    max_pages: int = 200
    # Pillow's own decompression-bomb threshold: an A3 page scanned at 600 dpi (70 Mpx) fits.
    max_pixels: int = 89_478_485
