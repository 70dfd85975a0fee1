"""DocFormerv2 processor: the one place where a page becomes model inputs.

(page image, OCRResult, prompt) -> `input_ids`, `bbox`, `attention_mask`, `token_type_ids`,
`pixel_values`, `word_ids`:

- Each OCR word is tokenized on its own; every sub-word token inherits its word's box, and
  `word_ids[b, t]` maps the token back to its index in `ocr.words` (-1 for prompt, special and
  padding tokens): that is how answers are grounded back to OCR words, pages and boxes.
- Boxes are normalised here and nowhere else: page pixels -> integers 0..1000, from the OCR
  result's page size. NaN, infinite, negative, reversed and out-of-page coordinates are repaired
  (NaN -> 0, corners sorted, clamped to 0..1000), never raised on.
- Text row layout: OCR tokens, then the prompt tokens, then `</s>`. Prompt and `</s>` get the
  full-page box (0, 0, 1000, 1000) - a prompt is about the whole page - and token type 1
  (OCR tokens: 0); the model turns that into its modality embedding.
- The image is resized to the config's (height, width) without keeping the aspect ratio, exactly
  like the boxes (x / page width, y / page height), so a word's box lies over its own patches.
  Pixels are scaled to [0, 1] then normalised with mean 0.5 / std 0.5. A page without an image
  (OCR cached without its rendering) gets a blank white one. The image must be the page as the
  OCR saw it, i.e. already turned by `ocr.rotation`, since the boxes refer to that page.
- Batches are padded on the right to their longest row; output is deterministic.

Long pages: `__call__` truncates the OCR tokens to the encoder budget and logs a warning.
Extraction must use `windows(...)`: each page is cut into windows of whole words (only a word
longer than half a window is cut) that overlap by `window_overlap` tokens, each window one batch
row carrying the prompt; `source_index` says which input each row came from.
`merge_window_answers` then keeps, per input, the highest-confidence non-empty answer (empty only
when every window answered empty) - a field is usually printed once, so the window that sees it
answers with confidence and the others answer empty or unsure.

The processor is a plain class rather than a `ProcessorMixin`: its image step is a resize and a
normalisation, and `save_pretrained`/`from_pretrained` only need the tokenizer plus one JSON file.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, PreTrainedTokenizerBase

from docformer.document import OCRResult
from docformer.models.docformerv2.configuration_docformerv2 import DocFormerV2Config
from docformer.models.docformerv2.generation_docformerv2 import GreedyGeneration

logger = logging.getLogger(__name__)

PROCESSOR_CONFIG_NAME = "processor_config.json"
FULL_PAGE_BOX = (0, 0, 1000, 1000)
TOKEN_TYPE_OCR, TOKEN_TYPE_PROMPT = 0, 1


@dataclass
class PageTokens:
    """The OCR tokens of one page: ids, boxes (n, 4) in 0..1000, and the word each came from."""

    input_ids: list[int]
    boxes: np.ndarray
    word_ids: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    def slice(self, start: int, end: int) -> PageTokens:
        return PageTokens(
            self.input_ids[start:end], self.boxes[start:end], self.word_ids[start:end]
        )


@dataclass
class EncoderRow:
    """One encoder text row, ready to pad: OCR tokens (maybe corrupted) + prompt + </s>."""

    input_ids: list[int]
    boxes: np.ndarray  # (n, 4) ints 0..1000
    token_type_ids: list[int]
    word_ids: list[int]


@dataclass
class Answer:
    """A decoded answer; `confidence` is the product of its token probabilities (</s> included),
    i.e. the probability the model gives to exactly this answer."""

    text: str
    confidence: float
    token_probs: list[float] = field(default_factory=list)


def normalize_boxes(boxes: np.ndarray | Sequence, width: float, height: float) -> np.ndarray:
    """Page-pixel boxes (n, 4) -> int64 boxes in 0..1000. Never raises on bad coordinates."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width = width if math.isfinite(width) and width > 0 else 1.0
    height = height if math.isfinite(height) and height > 0 else 1.0
    scale = np.array([width, height, width, height])
    scaled = np.nan_to_num(boxes, nan=0.0, posinf=1e9, neginf=-1e9) * (1000.0 / scale)
    scaled = np.clip(np.rint(scaled), 0, 1000).astype(np.int64)
    x0, x1 = np.minimum(scaled[:, 0], scaled[:, 2]), np.maximum(scaled[:, 0], scaled[:, 2])
    y0, y1 = np.minimum(scaled[:, 1], scaled[:, 3]), np.maximum(scaled[:, 1], scaled[:, 3])
    return np.stack([x0, y0, x1, y1], axis=1)


def merge_window_answers(answers: Sequence[Answer], source_index: Sequence[int]) -> list[Answer]:
    """Per input (page, prompt): the highest-confidence non-empty answer among its windows, or,
    when all its windows answered empty, the most confident empty answer."""
    best: dict[int, Answer] = {}
    for answer, source in zip(answers, source_index, strict=True):
        current = best.get(source)
        rank = (bool(answer.text), answer.confidence)
        if current is None or rank > (bool(current.text), current.confidence):
            best[source] = answer
    return [best[i] for i in sorted(best)]


class DocFormerV2Processor:
    """Turns pages (image + OCR result) and prompts into DocFormerv2 inputs; decodes answers."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        image_size: Sequence[int] = (512, 384),
        max_text_tokens: int = 512,
        window_overlap: int | None = None,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
    ):
        # Default: an eighth of the window (64 of 512 tokens) - enough for a label and its value
        # on the same line to be seen together by one window or the next.
        window_overlap = max_text_tokens // 8 if window_overlap is None else window_overlap
        if not 0 <= window_overlap < max_text_tokens // 4:
            raise ValueError("window_overlap must be in [0, max_text_tokens // 4)")
        self.tokenizer = tokenizer
        self.image_size = [int(v) for v in image_size]  # (height, width)
        self.max_text_tokens = int(max_text_tokens)
        self.window_overlap = int(window_overlap)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]

    @classmethod
    def from_config(
        cls, config: DocFormerV2Config, tokenizer: PreTrainedTokenizerBase, **kwargs
    ) -> DocFormerV2Processor:
        return cls(
            tokenizer,
            image_size=config.image_size,
            max_text_tokens=config.max_text_tokens,
            **kwargs,
        )

    # --- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "processor_class": type(self).__name__,
            "image_size": self.image_size,
            "max_text_tokens": self.max_text_tokens,
            "window_overlap": self.window_overlap,
            "image_mean": self.image_mean,
            "image_std": self.image_std,
        }

    def save_pretrained(self, save_directory: str | Path) -> None:
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))
        (directory / PROCESSOR_CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> DocFormerV2Processor:
        from docformer.tokenization import load_tokenizer

        settings = json.loads((Path(directory) / PROCESSOR_CONFIG_NAME).read_text())
        settings.pop("processor_class", None)
        return cls(load_tokenizer(directory), **settings)

    # --- text -----------------------------------------------------------------------------
    def tokenize_page(self, ocr: OCRResult) -> PageTokens:
        """All OCR tokens of a page, each with its word's normalised box and index."""
        if not ocr.words:
            return PageTokens([], np.zeros((0, 4), dtype=np.int64), [])
        encoding = self.tokenizer(
            [w.text for w in ocr.words],
            is_split_into_words=True,
            add_special_tokens=False,
        )
        word_ids = [int(i) for i in encoding.word_ids()]
        word_boxes = normalize_boxes([w.box for w in ocr.words], ocr.width, ocr.height)
        boxes = word_boxes[word_ids] if word_ids else np.zeros((0, 4), dtype=np.int64)
        return PageTokens(list(encoding["input_ids"]), boxes, word_ids)

    def tokenize_prompt(self, prompt: str | None) -> list[int]:
        """Prompt token ids, capped at half the text budget so OCR tokens always get room."""
        if not prompt:
            return []
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return list(ids[: self.max_text_tokens // 2])

    def ocr_budget(self, prompt_ids: Sequence[int]) -> int:
        """How many OCR tokens fit next to this prompt and the final </s>."""
        return self.max_text_tokens - len(prompt_ids) - 1

    def build_row(self, tokens: PageTokens, prompt_ids: Sequence[int]) -> EncoderRow:
        """OCR tokens + prompt + </s> as one row (the caller has already fitted the budget)."""
        tail = [*prompt_ids, self.tokenizer.eos_token_id]
        tail_boxes = np.tile(np.array(FULL_PAGE_BOX, dtype=np.int64), (len(tail), 1))
        return EncoderRow(
            input_ids=[*tokens.input_ids, *tail],
            boxes=np.concatenate([tokens.boxes.reshape(-1, 4), tail_boxes]),
            token_type_ids=[TOKEN_TYPE_OCR] * len(tokens) + [TOKEN_TYPE_PROMPT] * len(tail),
            word_ids=[*tokens.word_ids, *([-1] * len(tail))],
        )

    def window_spans(self, tokens: PageTokens, budget: int) -> list[tuple[int, int]]:
        """[start, end) token spans covering every token, at most `budget` long, cut between
        words where possible, consecutive spans overlapping by about `window_overlap` tokens.

        A cut moves back to a word start only while that keeps at least half a window: a word
        longer than that (an OCR'd barcode, a run of text without spaces) is cut inside, so every
        window is at least half the budget long and advances by at least half its length: a page
        of n tokens takes at most about 4n / budget windows (n / (budget - window_overlap) with
        ordinary words), never one per token of a long word."""
        n = len(tokens)
        if n <= budget:
            return [(0, n)]
        word_ids = tokens.word_ids

        def word_start(i: int, lowest: int) -> int:
            # The first token of i's word if that is at or after `lowest`, else i (cut the word).
            j = i
            while j > lowest and word_ids[j - 1] == word_ids[j]:
                j -= 1
            return j if j == 0 or word_ids[j - 1] != word_ids[j] else i

        spans, start = [], 0
        while True:
            end = min(start + budget, n)
            if end == n:
                spans.append((start, n))
                return spans
            end = word_start(end, start + max(budget // 2, 1))
            spans.append((start, end))
            least = start + max((end - start) // 2, 1)
            start = word_start(max(end - self.window_overlap, least), least)

    # --- image ----------------------------------------------------------------------------
    def pixel_values(self, images: Sequence[Image.Image | None]) -> torch.Tensor:
        height, width = self.image_size
        mean = np.array(self.image_mean, dtype=np.float32)[:, None, None]
        std = np.array(self.image_std, dtype=np.float32)[:, None, None]
        arrays = []
        for image in images:
            if image is None:
                array = np.ones((3, height, width), dtype=np.float32)
            else:
                resized = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
                array = np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / 255.0
            arrays.append((array - mean) / std)
        return torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, 3, height, width)

    # --- batching -------------------------------------------------------------------------
    def pad(self, rows: Sequence[EncoderRow], pixel_values: torch.Tensor) -> BatchFeature:
        """Right-pads text rows to the longest one and stacks them with their images."""
        length = max((len(r.input_ids) for r in rows), default=0)
        batch = len(rows)
        input_ids = torch.full((batch, length), self.tokenizer.pad_token_id, dtype=torch.long)
        bbox = torch.zeros((batch, length, 4), dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        token_type_ids = torch.full((batch, length), TOKEN_TYPE_PROMPT, dtype=torch.long)
        word_ids = torch.full((batch, length), -1, dtype=torch.long)
        for b, row in enumerate(rows):
            n = len(row.input_ids)
            input_ids[b, :n] = torch.tensor(row.input_ids, dtype=torch.long)
            bbox[b, :n] = torch.from_numpy(np.asarray(row.boxes, dtype=np.int64).reshape(-1, 4))
            attention_mask[b, :n] = 1
            token_type_ids[b, :n] = torch.tensor(row.token_type_ids, dtype=torch.long)
            word_ids[b, :n] = torch.tensor(row.word_ids, dtype=torch.long)
        return BatchFeature(
            {
                "input_ids": input_ids,
                "bbox": bbox,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
                "pixel_values": pixel_values,
                "word_ids": word_ids,
            }
        )

    def __call__(
        self,
        images: Sequence[Image.Image | None],
        ocr_results: Sequence[OCRResult],
        prompts: Sequence[str | None] | str | None = None,
    ) -> BatchFeature:
        """One row per page. OCR tokens beyond the budget are dropped with a warning; use
        `windows` where every word must be seen (extraction)."""
        prompts = self._broadcast_prompts(prompts, len(ocr_results))
        rows = []
        for index, (ocr, prompt) in enumerate(zip(ocr_results, prompts, strict=True)):
            tokens, prompt_ids = self.tokenize_page(ocr), self.tokenize_prompt(prompt)
            budget = self.ocr_budget(prompt_ids)
            if len(tokens) > budget:
                logger.warning(
                    "page %d: %d OCR tokens do not fit the %d-token budget and were truncated; "
                    "use DocFormerV2Processor.windows to see them all",
                    index, len(tokens) - budget, budget,
                )  # fmt: skip
            rows.append(self.build_row(tokens.slice(0, budget), prompt_ids))
        return self.pad(rows, self.pixel_values(self._check_images(images, len(ocr_results))))

    def windows(
        self,
        images: Sequence[Image.Image | None],
        ocr_results: Sequence[OCRResult],
        prompts: Sequence[str | None] | str | None = None,
    ) -> tuple[BatchFeature, list[int]]:
        """Every OCR token of every page, in overlapping windows: (batch, source_index) where
        row r is a window of input `source_index[r]`. `word_ids` stay page-absolute."""
        prompts = self._broadcast_prompts(prompts, len(ocr_results))
        images = self._check_images(images, len(ocr_results))
        rows, source_index, row_images = [], [], []
        for index, (image, ocr, prompt) in enumerate(
            zip(images, ocr_results, prompts, strict=True)
        ):
            tokens, prompt_ids = self.tokenize_page(ocr), self.tokenize_prompt(prompt)
            for start, end in self.window_spans(tokens, self.ocr_budget(prompt_ids)):
                rows.append(self.build_row(tokens.slice(start, end), prompt_ids))
                source_index.append(index)
                row_images.append(image)
        return self.pad(rows, self.pixel_values(row_images)), source_index

    @staticmethod
    def _broadcast_prompts(prompts: Sequence[str | None] | str | None, n: int) -> list[str | None]:
        if prompts is None or isinstance(prompts, str):
            return [prompts] * n
        if len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts for {n} pages")
        return list(prompts)

    @staticmethod
    def _check_images(
        images: Sequence[Image.Image | None] | None, n: int
    ) -> list[Image.Image | None]:
        if images is None:
            return [None] * n
        if len(images) != n:
            raise ValueError(f"{len(images)} images for {n} pages")
        return list(images)

    # --- answers --------------------------------------------------------------------------
    def decode_answers(self, generation: GreedyGeneration) -> list[Answer]:
        answers = []
        for ids, probs, length in zip(
            generation.sequences.tolist(), generation.token_probs.tolist(), generation.lengths.tolist(),
            strict=True,
        ):  # fmt: skip
            ids, probs = ids[:length], probs[:length]
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            answers.append(
                Answer(
                    text=text,
                    confidence=float(math.prod(probs)) if probs else 0.0,
                    token_probs=probs,
                )
            )
        return answers


__all__ = [
    "Answer",
    "DocFormerV2Processor",
    "EncoderRow",
    "PageTokens",
    "merge_window_answers",
    "normalize_boxes",
]
