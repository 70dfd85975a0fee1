"""Between text detection and recognition: what the engine may do to the detector's regions and
their crops before the recogniser reads them (both off by default; see `OCRSettings`).

- **Joining regions split within one printed line.** PaddleOCR's detector sometimes cuts one
  printed phrase into pieces at a wider space ("SDN" | "BHD", "12." | "50"); each piece is then
  read alone and the words come out with a space where the print has none, or none where it has
  one. Regions side by side on one row, of about the same height and closer than a few line
  heights, are replaced by the box around them, and the recogniser reads the whole run and
  decides the spaces itself.
- **Enlarging small line crops.** The recogniser stretches every crop to 48 px high
  (bilinear); a crop cut from small print is enlarged with bicubic resampling first.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

# Pieces of one line overlap vertically by at least this share of the lower piece's height,
# and the taller is at most this many times the lower: a heading beside small print stays apart.
MIN_ROW_OVERLAP = 0.6
MAX_HEIGHT_RATIO = 1.5
# Only regions this flat are joined (the joined region is an axis-aligned box).
MAX_JOIN_DEGREES = 3.0


def _bounds(region: np.ndarray) -> tuple[float, float, float, float]:
    points = np.asarray(region, dtype=np.float64).reshape(-1, 2)
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _is_flat_row(region: np.ndarray) -> bool:
    points = np.asarray(region, dtype=np.float64).reshape(-1, 2)[:4]
    x0, y0, x1, y1 = _bounds(points)
    if y1 - y0 > 1.5 * (x1 - x0):  # a vertical region, read turned
        return False
    dx, dy = points[1] - points[0]
    return dx > 0 and abs(math.degrees(math.atan2(dy, dx))) <= MAX_JOIN_DEGREES


def join_split_boxes(regions: list[np.ndarray], max_gap: float) -> list[np.ndarray]:
    """`regions` (4 corner points each, clockwise from top-left) with the pieces of each printed
    line joined: a flat region and its nearest flat neighbour to the right on the same row are
    joined when the gap between them is at most `max_gap` times the taller one's height. A
    joined region is the axis-aligned box around its pieces and takes the place of its first
    piece; other regions are returned as given, in their order."""
    count = len(regions)
    bounds = [_bounds(r) for r in regions]
    flat = [i for i in range(count) if _is_flat_row(regions[i])]
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in flat:
        x0, y0, x1, y1 = bounds[i]
        height = y1 - y0
        nearest, nearest_gap = None, math.inf
        for j in flat:
            u0, v0, u1, v1 = bounds[j]
            other = v1 - v0
            lower, taller = min(height, other), max(height, other)
            if j == i or u0 <= x0 or lower <= 0 or taller > MAX_HEIGHT_RATIO * lower:
                continue
            if min(y1, v1) - max(y0, v0) < MIN_ROW_OVERLAP * lower:
                continue
            gap = u0 - x1
            if gap >= -0.5 * lower and gap < nearest_gap:  # overlapping more: not a neighbour
                nearest, nearest_gap = j, gap
        if nearest is not None and nearest_gap <= max_gap * max(
            height, bounds[nearest][3] - bounds[nearest][1]
        ):
            parent[root(nearest)] = root(i)

    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(root(i), []).append(i)
    joined = []
    for i in range(count):
        group = groups[root(i)]
        if group[0] != i:
            continue  # a later piece of a line already emitted
        if len(group) == 1:
            joined.append(regions[i])
            continue
        x0 = min(bounds[k][0] for k in group)
        y0 = min(bounds[k][1] for k in group)
        x1 = max(bounds[k][2] for k in group)
        y1 = max(bounds[k][3] for k in group)
        box = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        joined.append(box.astype(np.asarray(regions[i]).dtype))
    return joined


def upscale_crop(crop: np.ndarray, height: int) -> np.ndarray:
    """`crop` (H×W×C) enlarged with bicubic resampling to `height` pixels high, keeping its
    aspect ratio; a crop already that high or higher is returned unchanged."""
    h, w = crop.shape[:2]
    if h >= height or h == 0:
        return crop
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(crop).resize((width, height), Image.BICUBIC))
