"""Reading order: text segments (PaddleOCR text regions, or runs of a PDF text layer) → lines.

A segment is a piece of one printed line that a reader saw as one unit; one printed line can be
several segments ("Total" ... "12.00" on a receipt). This module joins segments into lines and
numbers the lines in reading order:

1. Estimate the page's skew from the segments' own baselines and measure everything in a
   de-skewed frame, so a page scanned a few degrees off does not mix neighbouring lines.
2. Split the page recursively (an XY-cut): first at horizontal gaps clearly wider than the
   usual gap between lines (a title above a two-column body, paragraphs), then at a vertical gutter that looks like a text column
   (see `_is_column_gutter`), and read the parts top to bottom, left to right.
3. Inside a part, segments that overlap vertically by half their height form one line.

Boxes are never changed here: the de-skewed frame is used for ordering only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from docformer.document import Word

# Segments flatter than this (width / height) carry a reliable baseline angle.
_MIN_ASPECT_FOR_SKEW = 3.0
_MAX_SKEW_DEGREES = 15.0


@dataclass
class TextSegment:
    """One piece of a printed line: its words left to right and its quadrilateral.

    `quad` is 4 corner points (top-left, top-right, bottom-right, bottom-left) in page pixels.
    """

    words: list[Word]
    quad: np.ndarray
    # Filled by `assign_lines`: the segment's axis-aligned box in the de-skewed frame.
    _box: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0), repr=False)

    @property
    def height(self) -> float:
        return self._box[3] - self._box[1]


def quad_from_box(box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def estimate_skew(segments: list[TextSegment]) -> float:
    """Median baseline angle in radians (positive = text rises to the left, image y down)."""
    angles, weights = [], []
    for seg in segments:
        top_left, top_right, bottom_right, bottom_left = seg.quad
        dx, dy = (top_right + bottom_right - top_left - bottom_left) / 2
        height = float(np.linalg.norm((bottom_left + bottom_right - top_left - top_right) / 2))
        length = math.hypot(dx, dy)
        if height <= 0 or length / height < _MIN_ASPECT_FOR_SKEW:
            continue
        angles.append(math.atan2(dy, dx))
        weights.append(length)
    if not angles:
        return 0.0
    order = np.argsort(angles)
    cumulative = np.cumsum(np.asarray(weights)[order])
    median = float(np.asarray(angles)[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
    limit = math.radians(_MAX_SKEW_DEGREES)
    return median if abs(median) <= limit else 0.0


def assign_lines(segments: list[TextSegment]) -> list[Word]:
    """Words of all segments in reading order, with `line_id` numbering lines from 0."""
    if not segments:
        return []
    angle = estimate_skew(segments)
    cos, sin = math.cos(-angle), math.sin(-angle)
    for seg in segments:
        xs = seg.quad[:, 0] * cos - seg.quad[:, 1] * sin
        ys = seg.quad[:, 0] * sin + seg.quad[:, 1] * cos
        seg._box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))

    words: list[Word] = []
    for line_id, line in enumerate(_read_region(segments)):
        for seg in sorted(line, key=lambda s: s._box[0]):
            for word in seg.words:
                word.line_id = line_id
                words.append(word)
    return words


def _read_region(segments: list[TextSegment]) -> list[list[TextSegment]]:
    """Lines of a region in reading order (recursive XY-cut, see the module docstring)."""
    if len(segments) <= 1:
        return [segments] if segments else []
    typical_height = float(np.median([s.height for s in segments]))

    # Cut across only at gaps clearly wider than the usual gap between lines: in a two-column
    # body the rows of both columns leave the same small gaps, and cutting there would pair
    # each left line with its right neighbour before the gutter is found.
    gaps = _gaps(segments, axis=1)
    usual_gap = float(np.median(gaps)) if gaps else 0.0
    bands = _split(segments, axis=1, min_gap=max(0.9 * typical_height, 1.6 * usual_gap))
    if len(bands) > 1:
        return [line for band in bands for line in _read_region(band)]

    columns = _split(segments, axis=0, min_gap=1.2 * typical_height)
    if len(columns) > 1:
        # Cut only at gutters that separate text columns; other gaps (a receipt's item and
        # price columns, a form's labels and values) stay inside lines.
        groups: list[list[TextSegment]] = [columns[0]]
        width = max(s._box[2] for s in segments) - min(s._box[0] for s in segments)
        for column in columns[1:]:
            if _is_column_gutter(groups[-1], column, width):
                groups.append(column)
            else:
                groups[-1] = groups[-1] + column
        if len(groups) > 1:
            return [line for group in groups for line in _read_region(group)]

    return _group_into_lines(segments)


def _split(segments: list[TextSegment], axis: int, min_gap: float) -> list[list[TextSegment]]:
    """Split where the projection on `axis` (0 = x, 1 = y) has an empty gap wider than min_gap."""
    lo, hi = axis, axis + 2
    ordered = sorted(segments, key=lambda s: s._box[lo])
    parts: list[list[TextSegment]] = [[ordered[0]]]
    reach = ordered[0]._box[hi]
    for seg in ordered[1:]:
        if seg._box[lo] - reach > min_gap:
            parts.append([seg])
        else:
            parts[-1].append(seg)
        reach = max(reach, seg._box[hi])
    return parts


def _gaps(segments: list[TextSegment], axis: int) -> list[float]:
    """Widths of the empty stretches in the projection of the segments on `axis`."""
    lo, hi = axis, axis + 2
    ordered = sorted(segments, key=lambda s: s._box[lo])
    gaps, reach = [], ordered[0]._box[hi]
    for seg in ordered[1:]:
        if seg._box[lo] > reach:
            gaps.append(seg._box[lo] - reach)
        reach = max(reach, seg._box[hi])
    return gaps


def _is_column_gutter(left: list[TextSegment], right: list[TextSegment], width: float) -> bool:
    """A gap between two text columns: both sides hold several lines of running text that
    fill their side (not a narrow list of numbers) and each side is a real share of the width."""

    def looks_like_text_column(side: list[TextSegment]) -> bool:
        if len(side) < 3:
            return False
        x0, x1 = min(s._box[0] for s in side), max(s._box[2] for s in side)
        span = x1 - x0
        filled = np.median([(s._box[2] - s._box[0]) / span for s in side]) if span > 0 else 0
        return span >= 0.25 * width and filled >= 0.5

    return looks_like_text_column(left) and looks_like_text_column(right)


def _group_into_lines(segments: list[TextSegment]) -> list[list[TextSegment]]:
    """Segments overlapping vertically by at least half the smaller height share a line."""
    lines: list[list[TextSegment]] = []
    spans: list[tuple[float, float]] = []  # (top, bottom) of each line's first segment
    for seg in sorted(segments, key=lambda s: (s._box[1] + s._box[3]) / 2):
        top, bottom = seg._box[1], seg._box[3]
        best, best_overlap = -1, 0.0
        for i, (line_top, line_bottom) in enumerate(spans[-3:], start=max(0, len(spans) - 3)):
            overlap = min(bottom, line_bottom) - max(top, line_top)
            smaller = min(bottom - top, line_bottom - line_top)
            if smaller > 0 and overlap / smaller >= 0.5 and overlap > best_overlap:
                best, best_overlap = i, overlap
        if best >= 0 and not _overlaps_horizontally(seg, lines[best]):
            lines[best].append(seg)
        else:
            lines.append([seg])
            spans.append((top, bottom))
    lines.sort(key=lambda line: min((s._box[1] + s._box[3]) / 2 for s in line))
    return lines


def _overlaps_horizontally(seg: TextSegment, line: list[TextSegment]) -> bool:
    """Two segments stacked over each other are different lines even if their boxes touch."""
    for other in line:
        overlap = min(seg._box[2], other._box[2]) - max(seg._box[0], other._box[0])
        if overlap > 0.5 * min(seg._box[2] - seg._box[0], other._box[2] - other._box[0]):
            return True
    return False
