"""Targets for DocFormerv2's three self-supervised pre-training tasks, and the collator that builds
a batch for all three at once from (page image, OCR result) pairs. No labels are needed: the
targets come from the OCR words, their boxes and their line ids.

1. Masked-token prediction (decoder): T5 span corruption. Random spans of OCR tokens are each
   replaced by one sentinel `<extra_id_k>` in the encoder input; the decoder target lists every
   sentinel followed by the tokens it hides, then `</s>`. Span placement is T5's
   `random_spans_noise_mask`: the number of noise tokens is round(n * noise_density), cut into
   round(noise / mean_span) spans of random lengths, interleaved with non-noise spans, the first
   span being non-noise.
2. Token-to-line (encoder): pairs of text tokens are classified 0 = same line, 1 = adjacent line,
   2 = further apart. "Adjacent" means the OCR line ids differ by exactly one: line ids are in
   reading order, so this is the next/previous line the OCR read. Sampling is balanced: pair
   slots are dealt round-robin over the classes that exist on the page (uniform random anchor
   token among those that have a partner of that class, uniform random partner). Without it
   "further" dominates any page of more than a few lines and the task degenerates to guessing
   it; balanced, the majority-class baseline is about 1/3.
3. Token-to-grid (encoder): the page (0..1000 both ways) is cut into grid x grid cells; each
   text token's target is the cell holding its box centre, cell = row * grid + col. A centre
   exactly on an inner border belongs to the higher cell (the border is the start of a cell),
   a centre at 1000 (the page edge) to the last cell. Integer arithmetic (x0 + x1 vs cell
   edges doubled) makes this exact, with no floating-point ties.

Alignment with the corrupted sequence: the encoder sees corrupted text, so token-to-line pairs
and token-to-grid labels are built on the positions of the corrupted row. Kept tokens carry
their original line id and box; sentinel positions (and the prompt/`</s>`/padding) get grid
label -100 and never take part in a pair. A sentinel's box is the union of the boxes of the
tokens it hides: the encoder learns *where* text is missing, which is information the page
really shows, while *what* is missing is left for the decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from docformer.document import OCRResult
from docformer.models.docformerv2.processing_docformerv2 import (
    DocFormerV2Processor,
    EncoderRow,
    PageTokens,
)
from docformer.tokenization import sentinel_ids as tokenizer_sentinel_ids

IGNORE_INDEX = -100
SAME_LINE, ADJACENT_LINE, FURTHER_LINE = 0, 1, 2

RngLike = np.random.Generator | int | None


@dataclass
class SpanCorruption:
    """`inputs`: tokens with each noise span replaced by a sentinel; `targets`: each sentinel
    followed by the tokens it replaced; `source[i]`: for each input position, the index of the
    original token it is, or -1 for a sentinel; `spans`: the [start, end) noise spans."""

    inputs: list[int]
    targets: list[int]
    source: list[int]
    spans: list[tuple[int, int]]


def _rng(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Splits num_items into num_segments positive lengths, uniformly over compositions."""
    cuts = np.sort(rng.choice(np.arange(1, num_items), size=num_segments - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [num_items]]))


def span_corruption(
    token_ids: Sequence[int],
    sentinel_ids: Sequence[int],
    noise_density: float = 0.15,
    mean_span: float = 3.0,
    rng: RngLike = None,
) -> SpanCorruption:
    """T5 span corruption of one token sequence (see the module docstring)."""
    rng = _rng(rng)
    tokens = list(token_ids)
    n = len(tokens)
    if n < 2 or not sentinel_ids or noise_density <= 0:
        return SpanCorruption(tokens, [], list(range(n)), [])
    num_noise = min(max(int(round(n * noise_density)), 1), n - 1)
    num_spans = max(int(round(num_noise / mean_span)), 1)
    num_spans = min(num_spans, len(sentinel_ids), num_noise, n - num_noise)
    noise_lengths = _random_segmentation(num_noise, num_spans, rng)
    keep_lengths = _random_segmentation(n - num_noise, num_spans, rng)

    inputs, targets, source, spans = [], [], [], []
    position = 0
    for k in range(num_spans):
        keep_end = position + int(keep_lengths[k])
        inputs.extend(tokens[position:keep_end])
        source.extend(range(position, keep_end))
        noise_end = keep_end + int(noise_lengths[k])
        inputs.append(sentinel_ids[k])
        source.append(-1)
        targets.append(sentinel_ids[k])
        targets.extend(tokens[keep_end:noise_end])
        spans.append((keep_end, noise_end))
        position = noise_end
    return SpanCorruption(inputs, targets, source, spans)


def reassemble_spans(
    inputs: Sequence[int], targets: Sequence[int], sentinel_ids: Sequence[int]
) -> list[int]:
    """Inverse of `span_corruption`: puts each sentinel's target tokens back in its place."""
    sentinels = set(sentinel_ids)
    filling: dict[int, list[int]] = {}
    current = None
    for token in targets:
        if token in sentinels:
            current = filling.setdefault(token, [])
        elif current is not None:
            current.append(token)
    out: list[int] = []
    for token in inputs:
        out.extend(filling.get(token, []) if token in sentinels else [token])
    return out


def line_class(line_a: int, line_b: int) -> int:
    distance = abs(line_a - line_b)
    return SAME_LINE if distance == 0 else ADJACENT_LINE if distance == 1 else FURTHER_LINE


def token_to_line_pairs(
    line_ids: Sequence[int], n_pairs: int, rng: RngLike = None
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced token pairs and their classes from per-position line ids.

    Positions with a negative line id (sentinels, prompt, padding) are never sampled. Returns
    `pairs` (m, 2) of positions and `classes` (m,), m = n_pairs unless the row has no valid pair.
    """
    rng = _rng(rng)
    lines = np.asarray(line_ids, dtype=np.int64)
    valid = np.flatnonzero(lines >= 0)
    empty = np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    if len(valid) < 2 or n_pairs <= 0:
        return empty
    valid_lines = lines[valid]
    distance = np.abs(valid_lines[:, None] - valid_lines[None, :])  # (v, v), v <= text length
    partners_by_class = [
        (distance == 0) & ~np.eye(len(valid), dtype=bool),
        distance == 1,
        distance >= 2,
    ]
    anchors_by_class = [np.flatnonzero(p.any(1)) for p in partners_by_class]
    available = [c for c in (SAME_LINE, ADJACENT_LINE, FURTHER_LINE) if len(anchors_by_class[c])]
    pairs, classes = [], []
    for slot in range(n_pairs):
        c = available[slot % len(available)]
        anchor = rng.choice(anchors_by_class[c])
        partner = rng.choice(np.flatnonzero(partners_by_class[c][anchor]))
        pairs.append((valid[anchor], valid[partner]))
        classes.append(c)
    return np.asarray(pairs, dtype=np.int64), np.asarray(classes, dtype=np.int64)


def token_to_grid_labels(boxes_0_1000: np.ndarray | Sequence, grid: int = 4) -> np.ndarray:
    """Cell (row * grid + col) of each box centre; boxes are (n, 4) integers in 0..1000."""
    boxes = np.clip(np.asarray(boxes_0_1000, dtype=np.int64).reshape(-1, 4), 0, 1000)
    # centre * grid / 1000 with centre = (a + b) / 2, kept in integers: (a + b) * grid // 2000.
    col = np.minimum((boxes[:, 0] + boxes[:, 2]) * grid // 2000, grid - 1)
    row = np.minimum((boxes[:, 1] + boxes[:, 3]) * grid // 2000, grid - 1)
    return row * grid + col


class PretrainingCollator:
    """(page image or None, OCRResult) pairs -> one batch for the three tasks at once.

    Output keys: the processor's (`input_ids`, `bbox`, `attention_mask`, `token_type_ids`,
    `pixel_values`, `word_ids`) for the corrupted rows, plus `labels` (B, L) span targets + `</s>`
    padded with -100, `line_pairs` (B, P, 2) / `line_labels` (B, P) padded with -100, and
    `grid_labels` (B, T) aligned with `input_ids`. Pages longer than the encoder budget
    contribute a random window (cut between words) each time they are drawn. Deterministic for a
    given seed and call order.
    """

    def __init__(
        self,
        processor: DocFormerV2Processor,
        noise_density: float = 0.15,
        mean_span: float = 3.0,
        line_pairs_per_page: int = 64,
        grid_size: int = 4,
        seed: int | None = 0,
    ):
        self.processor = processor
        self.noise_density = noise_density
        self.mean_span = mean_span
        self.line_pairs_per_page = line_pairs_per_page
        self.grid_size = grid_size
        self.sentinel_ids = tokenizer_sentinel_ids(processor.tokenizer)
        self.rng = np.random.default_rng(seed)

    def corrupt_page(
        self, ocr: OCRResult
    ) -> tuple[EncoderRow, list[int], np.ndarray, np.ndarray, list[int]]:
        """One page -> (encoder row, decoder labels, line pairs, line classes, grid labels)."""
        processor = self.processor
        tokens = processor.tokenize_page(ocr)
        budget = processor.ocr_budget([])
        spans = processor.window_spans(tokens, budget)
        start, end = spans[int(self.rng.integers(len(spans)))]
        tokens = tokens.slice(start, end)

        corruption = span_corruption(
            tokens.input_ids, self.sentinel_ids, self.noise_density, self.mean_span, self.rng
        )
        source = np.asarray(corruption.source, dtype=np.int64)
        kept = source >= 0
        boxes = np.zeros((len(source), 4), dtype=np.int64)
        boxes[kept] = tokens.boxes[source[kept]]
        for position, (span_start, span_end) in zip(
            np.flatnonzero(~kept), corruption.spans, strict=True
        ):
            hidden = tokens.boxes[span_start:span_end]
            boxes[position] = [*hidden[:, :2].min(0), *hidden[:, 2:].max(0)]
        word_ids = np.full(len(source), -1, dtype=np.int64)
        word_ids[kept] = np.asarray(tokens.word_ids, dtype=np.int64)[source[kept]]
        line_of_word = np.asarray([w.line_id for w in ocr.words], dtype=np.int64)
        line_ids = np.full(len(source), -1, dtype=np.int64)
        line_ids[kept] = line_of_word[word_ids[kept]]

        # Sentinels stand in for OCR text, so the whole corrupted sequence is OCR-typed.
        row = processor.build_row(PageTokens(corruption.inputs, boxes, word_ids.tolist()), [])
        grid = np.full(len(row.input_ids), IGNORE_INDEX, dtype=np.int64)
        grid[: len(source)][kept] = token_to_grid_labels(boxes[kept], self.grid_size)
        pairs, classes = token_to_line_pairs(line_ids, self.line_pairs_per_page, self.rng)
        labels = [*corruption.targets, processor.tokenizer.eos_token_id]
        return row, labels, pairs, classes, grid.tolist()

    def __call__(
        self, examples: Sequence[tuple[Image.Image | None, OCRResult]]
    ) -> dict[str, torch.Tensor]:
        rows, labels, pairs, classes, grids = zip(
            *(self.corrupt_page(ocr) for _, ocr in examples), strict=True
        )
        batch = dict(
            self.processor.pad(rows, self.processor.pixel_values([image for image, _ in examples]))
        )
        text_length = batch["input_ids"].size(1)
        batch["labels"] = _pad_2d(labels, max(map(len, labels)), IGNORE_INDEX)
        batch["grid_labels"] = _pad_2d(grids, text_length, IGNORE_INDEX)
        n_pairs = max(1, max(len(p) for p in pairs))
        line_pairs = torch.zeros((len(rows), n_pairs, 2), dtype=torch.long)
        for b, page_pairs in enumerate(pairs):
            line_pairs[b, : len(page_pairs)] = torch.from_numpy(page_pairs.reshape(-1, 2))
        batch["line_pairs"] = line_pairs
        batch["line_labels"] = _pad_2d([c.tolist() for c in classes], n_pairs, IGNORE_INDEX)
        return batch


def _pad_2d(rows: Sequence[Sequence[int]], length: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, : len(row)] = torch.tensor(list(row), dtype=torch.long)
    return out


__all__ = [
    "ADJACENT_LINE",
    "FURTHER_LINE",
    "IGNORE_INDEX",
    "SAME_LINE",
    "PretrainingCollator",
    "SpanCorruption",
    "line_class",
    "reassemble_spans",
    "span_corruption",
    "token_to_grid_labels",
    "token_to_line_pairs",
]
