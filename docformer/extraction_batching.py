"""How extraction batches its work (`docformer.extraction.Extractor`): the windows that pages
are cut into (`Window`, one encoder row each), the length-sorted batches they are run in
(`length_batches`), and the choice, per document and field, of the answer kept among all its
windows (`merge_answers`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PIL import Image

from docformer.document import OCRResult
from docformer.generation import FieldAnswer
from docformer.models.docformerv2 import EncoderRow

# One page as the engine takes it: (page index in its document, page image or None, OCR result).
PageInput = tuple[int, Image.Image | None, OCRResult]


@dataclass
class Window:
    """One encoder row: a run of one page's OCR tokens plus the prompt."""

    unit: int  # which document (or page, for `extract_pages`) it belongs to
    page: int  # position of its page in the unit's page list
    row: EncoderRow
    word_range: tuple[int, int]  # [first, last) OCR word indices the window holds
    length: int  # encoder positions: visual tokens + text tokens


def length_batches(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Indices of `lengths` cut into batches, longest rows first, so that each batch's padded
    size (rows x its longest row) stays within `max_batch_tokens` (a row longer than that goes
    alone). Every index appears exactly once."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        # Sorted longest first: a batch's first row is its longest.
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_batch_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def merge_answers(
    answers: Sequence[Mapping[str, FieldAnswer]], units: Sequence[int], n_units: int
) -> list[dict[str, tuple[FieldAnswer, int]]]:
    """Per unit (document): field -> (the kept answer, index of the window it came from).

    Kept: the most confident non-empty answer among all the unit's windows, whatever page they
    are on; the first one wins a tie. A field that every window answered empty is left out.
    """
    best: list[dict[str, tuple[FieldAnswer, int]]] = [{} for _ in range(n_units)]
    for window_index, (window_answers, unit) in enumerate(zip(answers, units, strict=True)):
        for name, answer in window_answers.items():
            current = best[unit].get(name)
            if answer.value and (current is None or answer.confidence > current[0].confidence):
                best[unit][name] = (answer, window_index)
    return best


__all__ = ["PageInput", "Window", "length_batches", "merge_answers"]
