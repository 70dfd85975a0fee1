"""Grounding an answer: which OCR words of a page hold a piece of text the model answered.

The model generated an answer from a window of one page; its box, for people checking it and
for the database, is the union of the words it was read from. One run, the first found, is
enough. `docformer.alignment` asks the harder question of labelled values (every copy, which
one to tag) with the same stages and thresholds, defined here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from docformer.document import Box, OCRResult

# Fuzzy grounding: the smallest rapidfuzz `fuzz.ratio` (0-100, normalised Indel similarity) for a
# span of OCR words to count as the place an answer was read from. 80 accepts one wrong character
# in five or more ("TRADlNG" for "TRADING"), and rejects one in four: for short values such as
# "9.00" a near miss is more likely another number than an OCR typo, and no box beats a wrong one.
FUZZY_MIN_RATIO = 80.0
# Fuzzy candidates are runs of OCR words whose count is within this many of the answer's.
FUZZY_WORD_SLACK = 2
# Substring grounding (an answer inside a longer OCR word, "RM9.00" holding "9.00") needs at
# least this many characters; shorter values match inside too many unrelated words.
MIN_SUBSTRING_CHARS = 3


@dataclass
class Grounding:
    word_indices: list[int]
    box: Box
    method: str  # "exact", "case-insensitive", "substring" or "fuzzy"
    score: float = 100.0


def union_box(boxes: Sequence[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def ground_answer(
    answer: str,
    ocr: OCRResult,
    word_range: tuple[int, int] | None = None,
    min_ratio: float = FUZZY_MIN_RATIO,
) -> Grounding | None:
    """The OCR words of a page that hold `answer`, or None.

    Candidates are runs of consecutive words in reading order (so an address may run over
    several lines), restricted to `word_range` = [first, last) word indices when given. Tried in
    order, the first that finds something wins:

    1. exact: the run's texts joined by single spaces equal the whitespace-collapsed answer;
    2. case-insensitive: the same, lower-cased;
    3. substring: the answer (at least `MIN_SUBSTRING_CHARS` long, lower-cased) lies inside the
       joined text and starts or ends on a word boundary ("RM9.00" holds "9.00");
    4. fuzzy: the run with the best `fuzz.ratio` against the answer, if at least `min_ratio`,
       among runs of about as many words as the answer (OCR typos: "TRADlNG" for "TRADING").

    In the first three stages the first run in reading order wins: a value printed twice (a
    subtotal equal to the total) is grounded where it is printed first. Fuzzy ties go to the
    run of fewer words, then to the earlier one.
    """
    target = " ".join(answer.split())
    first, last = word_range if word_range is not None else (0, len(ocr.words))
    first, last = max(0, first), min(len(ocr.words), last)
    indices = [i for i in range(first, last) if ocr.words[i].text.strip()]
    if not target or not indices:
        return None
    texts = [" ".join(ocr.words[i].text.split()) for i in indices]

    def grounding(positions: Sequence[int], method: str, score: float = 100.0) -> Grounding:
        words = [indices[p] for p in positions]
        return Grounding(words, union_box([ocr.words[i].box for i in words]), method, score)

    lowered, lowered_target = [t.lower() for t in texts], target.lower()
    found = _find_run(target, texts)
    if found is not None:
        return grounding(found, "exact")
    found = _find_run(lowered_target, lowered)
    if found is not None:
        return grounding(found, "case-insensitive")
    if len(target) >= MIN_SUBSTRING_CHARS:
        found = _find_run(lowered_target, lowered, whole_words=False)
        if found is not None:
            return grounding(found, "substring")

    # Fuzzy: every run of n consecutive words, n within the slack of the answer's word count.
    n_words = len(target.split())
    runs, candidates = [], []
    for n in range(max(1, n_words - FUZZY_WORD_SLACK), n_words + FUZZY_WORD_SLACK + 1):
        for start in range(0, len(lowered) - n + 1):
            runs.append(range(start, start + n))
            candidates.append(" ".join(lowered[start : start + n]))
    best = process.extractOne(lowered_target, candidates, scorer=fuzz.ratio, score_cutoff=min_ratio)
    if best is None:
        return None
    _, score, position = best
    return grounding(list(runs[position]), "fuzzy", float(score))


def _find_run(target: str, texts: Sequence[str], whole_words: bool = True) -> list[int] | None:
    """Positions of the first run of `texts` whose space-joined text is `target` (whole_words),
    or that overlaps an occurrence of `target` starting or ending on a word boundary."""
    starts, ends, offset = [], [], 0
    for text in texts:
        starts.append(offset)
        ends.append(offset + len(text))
        offset += len(text) + 1
    joined = " ".join(texts)
    start_set, end_set = set(starts), set(ends)
    position = joined.find(target)
    while position >= 0:
        end = position + len(target)
        at_start, at_end = position in start_set, end in end_set
        if (at_start and at_end) if whole_words else (at_start or at_end):
            return [
                i
                for i, (s, e) in enumerate(zip(starts, ends, strict=True))
                if s < end and e > position
            ]
        position = joined.find(target, position + 1)
    return None


__all__ = [
    "FUZZY_MIN_RATIO",
    "FUZZY_WORD_SLACK",
    "MIN_SUBSTRING_CHARS",
    "Grounding",
    "ground_answer",
    "union_box",
]
