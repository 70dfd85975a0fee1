"""A page being printed: an ink layer, a vertical cursor, and the exact box of every word drawn.

Ink is kept apart from paper (one "L" layer, 255 = full ink) so that scan effects can later fade
the ink, tint it or put it on stained paper without touching the geometry. Each word is drawn on
its own at an integer origin and its box is the bounding box of the very glyph bitmap Pillow
draws there, so boxes are tight to the ink by construction, not estimated from font metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from docformer.document import Box, Word

Font = ImageFont.FreeTypeFont


@dataclass
class Segment:
    """A run of words printed in one go: what an OCR engine would report as one text line."""

    baseline: int
    words: list[tuple[str, Box]] = field(default_factory=list)


class Canvas:
    def __init__(self, width: int, height: int, margin: int = 20) -> None:
        self.width, self.height, self.margin = width, height, margin
        self.ink = Image.new("L", (width, height), 0)
        self.draw = ImageDraw.Draw(self.ink)
        self.y = float(margin)  # top of the next row
        self.segments: list[Segment] = []
        self.overflowed = False  # something was printed past the edge of the sheet

    # --- text -------------------------------------------------------------------------------

    def text(
        self,
        text: str,
        font: Font,
        x: float,
        baseline: float,
        align: str = "left",
        shade: int = 255,
    ) -> tuple[float, float]:
        """Print `text` on `baseline`, aligned at x ("left", "right" or "center"); return its span."""
        words = text.split()
        if not words:
            return x, x
        line = " ".join(words)
        width = font.getlength(line)
        left = x - width if align == "right" else x - width / 2 if align == "center" else x
        baseline = round(baseline)
        segment = Segment(baseline)
        offset = 0.0
        for word in words:
            origin = (round(left + offset), baseline)
            self.draw.text(origin, word, font=font, fill=shade, anchor="ls")
            # The same call Pillow makes inside draw.text, so this is the bitmap that was drawn.
            mask, (dx, dy) = font.getmask2(word, "L", anchor="ls")
            ink = mask.getbbox()
            if ink:
                x0, y0, x1, y1 = ink
                box = (
                    origin[0] + dx + x0,
                    origin[1] + dy + y0,
                    origin[0] + dx + x1,
                    origin[1] + dy + y1,
                )
                if box[0] < 0 or box[1] < 0 or box[2] > self.width or box[3] > self.height:
                    self.overflowed = True
                segment.words.append((word, tuple(float(v) for v in box)))
            offset += font.getlength(word + " ")
        if segment.words:
            self.segments.append(segment)
        return left, left + width

    def row(
        self,
        cells: list[tuple[str, float, str]],
        font: Font,
        spacing: float = 1.3,
        shade: int = 255,
    ) -> float:
        """Print cells (text, x, align) side by side on one baseline and move the cursor below them."""
        ascent, descent = font.getmetrics()
        baseline = self.y + ascent
        for text, x, align in cells:
            self.text(text, font, x, baseline, align, shade)
        self.y += max(ascent + descent + 3, (ascent + descent) * spacing)
        return baseline

    def fits(self, cells: list[tuple[str, float, str]], font: Font) -> bool:
        """Whether cells (text, x, align) printed on one row stay on the sheet and apart by at
        least a space: layouts try this before printing columns, and fall back when not."""
        gap = font.getlength(" ")
        spans = []
        for text, x, align in cells:
            width = font.getlength(" ".join(text.split()))
            x0 = x - width if align == "right" else x - width / 2 if align == "center" else x
            spans.append((x0, x0 + width))
        spans.sort()
        inside = spans[0][0] >= 0 and spans[-1][1] <= self.width
        return inside and all(b[0] - a[1] >= gap for a, b in zip(spans, spans[1:], strict=False))

    def wrap(self, text: str, font: Font, width: float) -> list[str]:
        """Greedy word wrap to `width` pixels (a word longer than the width gets a line of its own)."""
        lines: list[str] = []
        current = ""
        for word in text.split():
            candidate = f"{current} {word}".strip()
            if current and font.getlength(candidate) > width:
                lines.append(current)
                current = word
            else:
                current = candidate
        if current:
            lines.append(current)
        return lines

    def gap(self, pixels: float) -> None:
        self.y += pixels

    # --- graphics (ink that is not text) ---------------------------------------------------

    def hrule(
        self,
        x0: float,
        x1: float,
        y: float | None = None,
        thickness: int = 1,
        style: str = "solid",
        shade: int = 255,
    ) -> None:
        """A horizontal rule; with y=None it is drawn at the cursor, which moves past it."""
        at = self.y + 3 if y is None else y
        if style == "double":
            self.hrule(x0, x1, at, thickness, "solid", shade)
            self.hrule(x0, x1, at + thickness + 2, thickness, "solid", shade)
        elif style in {"dashed", "dotted"}:
            dash, space = (6, 4) if style == "dashed" else (2, 3)
            x = x0
            while x < x1:
                end = max(round(x), round(min(x + dash, x1)) - 1)
                self.draw.rectangle(
                    [round(x), round(at), end, round(at) + thickness - 1], fill=shade
                )
                x += dash + space
        else:
            self.draw.rectangle(
                [round(x0), round(at), max(round(x0), round(x1) - 1), round(at) + thickness - 1],
                fill=shade,
            )
        if y is None:
            self.y = at + thickness + (thickness + 2 if style == "double" else 0) + 5

    def rect(
        self,
        box: tuple[float, float, float, float],
        outline: int = 1,
        fill: int | None = None,
        shade: int = 255,
    ) -> None:
        x0, y0, x1, y1 = (round(v) for v in box)
        # Round-half-to-even can round x and x + 1 to the same pixel: keep at least one pixel.
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        if fill is not None:
            self.draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill)
        if outline:
            self.draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=shade, width=outline)

    def ellipse(
        self, box: tuple[float, float, float, float], width: int = 2, shade: int = 255
    ) -> None:
        self.draw.ellipse([round(v) for v in box], outline=shade, width=width)

    def polygon(
        self,
        points: list[tuple[float, float]],
        fill: int | None = None,
        shade: int = 255,
        width: int = 2,
    ) -> None:
        if fill is not None:
            self.draw.polygon(points, fill=fill)
        else:
            self.draw.line([*points, points[0]], fill=shade, width=width)

    def barcode(self, x: float, y: float, width: float, height: float, bars: list[int]) -> None:
        """Bars from a list of module widths (odd positions are gaps): looks like a 1-D barcode."""
        unit = width / max(1, sum(bars))
        at = x
        for i, modules in enumerate(bars):
            if i % 2 == 0:
                self.draw.rectangle(
                    [
                        round(at),
                        round(y),
                        max(round(at), round(at + modules * unit) - 1),
                        round(y + height) - 1,
                    ],
                    fill=255,
                )
            at += modules * unit

    def grid_code(self, x: float, y: float, size: float, cells: list[list[bool]]) -> None:
        """A square of filled cells: looks like a QR code."""
        unit = size / len(cells)
        for r, row in enumerate(cells):
            for c, on in enumerate(row):
                if on:
                    self.draw.rectangle(
                        [
                            round(x + c * unit),
                            round(y + r * unit),
                            round(x + (c + 1) * unit) - 1,
                            round(y + (r + 1) * unit) - 1,
                        ],
                        fill=255,
                    )

    def scribble(self, points: list[tuple[float, float]], width: int = 2) -> None:
        self.draw.line(points, fill=255, width=width, joint="curve")

    # --- result -----------------------------------------------------------------------------

    def crop_height(self, bottom_margin: int) -> None:
        """Cut the page just below what was printed (receipts are as long as their content)."""
        height = min(self.height, math.ceil(self.y + bottom_margin))
        self.ink = self.ink.crop((0, 0, self.width, height))
        self.draw = ImageDraw.Draw(self.ink)
        self.height = height

    def words(self) -> list[Word]:
        """Every word with its line id; lines are numbered top to bottom, then left to right."""
        ink = np.asarray(self.ink)
        ordered = sorted(self.segments, key=lambda s: (s.baseline, s.words[0][1][0]))
        return [
            Word(text, visible_box(ink, box), 1.0, line_id)
            for line_id, s in enumerate(ordered)
            for text, box in s.words
        ]


def visible_box(ink: np.ndarray, box: Box, level: float = 0.2) -> Box:
    """Shrink a glyph-bitmap box to the pixels that are visibly inked (at least `level` of the
    word's darkest): faint anti-aliasing fringes would otherwise make small words' boxes loose."""
    x0, y0, x1, y1 = (int(v) for v in box)
    crop = ink[y0:y1, x0:x1]
    if crop.size == 0:
        return box
    ys, xs = np.nonzero(crop >= max(1, level * int(crop.max())))
    if len(xs) == 0:
        return box
    return (
        float(x0 + xs.min()),
        float(y0 + ys.min()),
        float(x0 + xs.max() + 1),
        float(y0 + ys.max() + 1),
    )
