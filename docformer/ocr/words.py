"""PaddleOCR text lines → words with boxes.

PaddleOCR boxes whole text regions. With `return_word_box=True` it also reports, for each run
of letters, digits or punctuation ("INV", "-", "2024", " "), the span of the recogniser's CTC
columns that emitted it: a position along the line measured by the model itself. We turn those
runs into per-character spans (spreading a run's width over its characters by rough glyph
widths), cut the line into whitespace-separated words, and map each word's span back onto the
region's quadrilateral, so words on a slightly skewed line get boxes that follow the line.
Without usable runs, the whole line is split the same way by glyph widths alone.

Those spans mark where the model looked, not where the ink is: they start a little inside the
first glyph and end inside the last, and the region's height includes the detector's padding.
On flat lines, the page's own pixels settle the box: the line is cut between words at the middle
of each gap the spans leave, and each word's box is the ink inside its share. So a scanned word
gets a tight box like a text-layer word does.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from docformer.document import Word
from docformer.ocr.layout import TextSegment

# Relative advance widths of a proportional Latin font (DejaVu Sans / Helvetica-like), enough
# to place a word inside a run that mixes wide and narrow glyphs better than equal shares.
_NARROW = set("il.,:;'|!`ƒIj()[]{}/\\")
_SEMI_NARROW = set('frt1-"')
_WIDE = set("mwMW%@")


def glyph_width(char: str) -> float:
    if char.isspace():
        return 0.6
    if char in _NARROW:
        return 0.45
    if char in _SEMI_NARROW:
        return 0.7
    if char in _WIDE:
        return 1.4
    if char.isupper():
        return 1.15
    return 1.0


# What `fold_text` can do to recognised text (see `OCRSettings.text_form`).
TEXT_FORMS = ("", "nfkc", "nfkc-no-accents")
# Latin letters (Basic Latin up to Latin Extended-B, and Latin Extended Additional).
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]")


def fold_text(text: str, form: str) -> str:
    """`text` in one of `TEXT_FORMS`. "nfkc": Unicode compatibility forms folded, so full-width
    brackets and letters the multilingual recogniser emits on Latin print ("（M）") become
    ASCII. "nfkc-no-accents": that, and accents dropped from Latin letters ("ÁLAM" for a
    speck above "ALAM"); only for documents in a language without them. "": as read."""
    if not form:
        return text
    if form not in TEXT_FORMS:
        raise ValueError(f"unknown text form {form!r}; known: {TEXT_FORMS}")
    text = unicodedata.normalize("NFKC", text)
    if form == "nfkc-no-accents" and not text.isascii():
        kept: list[str] = []
        for char in unicodedata.normalize("NFD", text):
            if unicodedata.combining(char) and kept and _LATIN.match(kept[-1]):
                continue
            kept.append(char)
        text = unicodedata.normalize("NFC", "".join(kept))
    return text


@dataclass
class RecognisedLine:
    """One text region as PaddleOCR returns it."""

    text: str
    score: float
    quad: np.ndarray  # (4, 2): top-left, top-right, bottom-right, bottom-left
    runs: list[str] | None = None  # `text_word`: the line cut into runs, "".join(runs) == text
    run_boxes: np.ndarray | None = None  # `text_word_boxes`: (len(runs), 4) x0, y0, x1, y1

    @property
    def is_vertical(self) -> bool:
        width = np.ptp(self.quad[:, 0])
        height = np.ptp(self.quad[:, 1])
        return width > 0 and height / width > 1.5


def char_spans(line: RecognisedLine) -> np.ndarray:
    """(len(text), 2) start and end of every character as fractions 0–1 along the line."""
    text = line.text
    weights = np.array([glyph_width(c) for c in text])
    if _runs_usable(line):
        # PaddleOCR measured the runs against the region's first and second corner x (or y
        # for vertical regions); undo that to get fractions along the line.
        axis = 1 if line.is_vertical else 0
        start = line.quad[0, axis]
        length = (line.quad[2, 1] if line.is_vertical else line.quad[1, 0]) - start
        if length > 0:
            spans = np.zeros((len(text), 2))
            position = 0
            for run, box in zip(line.runs, line.run_boxes, strict=True):
                f0 = (box[axis] - start) / length
                f1 = (box[axis + 2] - start) / length
                w = weights[position : position + len(run)]
                edges = f0 + (f1 - f0) * np.concatenate([[0], np.cumsum(w)]) / w.sum()
                spans[position : position + len(run), 0] = edges[:-1]
                spans[position : position + len(run), 1] = edges[1:]
                position += len(run)
            return np.clip(spans, 0.0, 1.0)
    edges = np.concatenate([[0], np.cumsum(weights)]) / max(weights.sum(), 1e-9)
    return np.stack([edges[:-1], edges[1:]], axis=1)


def _runs_usable(line: RecognisedLine) -> bool:
    return (
        line.runs is not None
        and line.run_boxes is not None
        and len(line.runs) == len(line.run_boxes)
        and "".join(line.runs) == line.text
        and all(len(run) > 0 for run in line.runs)
    )


def line_to_segment(line: RecognisedLine, grey: np.ndarray | None = None) -> TextSegment:
    """The words of one recognised line, boxes in page pixels, confidence = the line's score.

    `grey` (the page as an H×W uint8 array) lets flat lines fit word boxes to the ink."""
    spans = char_spans(line)
    top_left, top_right, bottom_right, bottom_left = line.quad.astype(np.float64)
    if line.is_vertical:
        # Vertical regions read top to bottom: the line's "length" runs down the left edge.
        top_left, top_right, bottom_right, bottom_left = (
            top_left,
            bottom_left,
            bottom_right,
            top_right,
        )
    words = []
    for match in re.finditer(r"\S+", line.text):
        f0, f1 = spans[match.start(), 0], spans[match.end() - 1, 1]
        corners = np.array(
            [
                top_left + f0 * (top_right - top_left),
                top_left + f1 * (top_right - top_left),
                bottom_left + f1 * (bottom_right - bottom_left),
                bottom_left + f0 * (bottom_right - bottom_left),
            ]
        )
        x0, y0 = corners.min(axis=0)
        x1, y1 = corners.max(axis=0)
        words.append(Word(match.group(), (float(x0), float(y0), float(x1), float(y1)), line.score))
    if grey is not None and words and not line.is_vertical and _is_flat(line.quad):
        fit_boxes_to_ink(words, line.quad, grey)
    return TextSegment(words, line.quad.astype(np.float64))


def _is_flat(quad: np.ndarray, max_degrees: float = 1.5) -> bool:
    dx, dy = quad[1] - quad[0]
    return dx > 0 and abs(math.degrees(math.atan2(dy, dx))) <= max_degrees


def fit_boxes_to_ink(words: list[Word], quad: np.ndarray, grey: np.ndarray) -> None:
    """Shrink or grow each word's box (in place) to the dark pixels of its share of the line."""
    height, width = grey.shape
    x0, y0 = np.floor(quad.min(axis=0)).astype(int)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    crop = grey[y0:y1, x0:x1]
    dark, light = np.percentile(crop, 5), np.percentile(crop, 95)
    if light - dark < 40:  # no clear ink on this background: keep the model's boxes
        return
    ink = crop < (dark + light) / 2
    line_height = y1 - y0
    # Word i owns the columns between the middles of the gaps to its neighbours, and never
    # more than a line height beyond its model span (table rules, stamps, noise).
    for i, word in enumerate(words):
        left = x0 if i == 0 else (words[i - 1].box[2] + word.box[0]) / 2
        right = x1 if i == len(words) - 1 else (word.box[2] + words[i + 1].box[0]) / 2
        left = max(left, word.box[0] - line_height)
        right = min(right, word.box[2] + line_height)
        c0, c1 = int(round(left)) - x0, int(round(right)) - x0
        share = ink[:, max(c0, 0) : max(c1, 0)]
        columns = np.flatnonzero(share.any(axis=0))
        if columns.size == 0:
            continue
        rows = _main_run(
            np.flatnonzero(share[:, columns[0] : columns[-1] + 1].any(axis=1)),
            max_gap=max(2, line_height // 5),
        )
        word.box = (
            float(x0 + max(c0, 0) + columns[0]),
            float(y0 + rows[0]),
            float(x0 + max(c0, 0) + columns[-1] + 1),
            float(y0 + rows[-1] + 1),
        )


def _main_run(indices: np.ndarray, max_gap: int) -> np.ndarray:
    """The longest run of indices with gaps of at most max_gap (drops a neighbour line's tails)."""
    breaks = np.flatnonzero(np.diff(indices) > max_gap + 1) + 1
    runs = np.split(indices, breaks)
    return max(runs, key=len)
