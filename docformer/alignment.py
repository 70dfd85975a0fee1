"""Where on a page a labelled value is printed: the runs of OCR words a tagger learns to tag.

`find_value_runs` / `align_value` / `align_examples` (word tagging): labels arrive as
`{field: value}`, not as word tags, so each value must be pinned to a run of OCR words before
BIO tags can be written. A value may be printed more than once (a total equal to the
  subtotal, a date in the header and the footer), so every occurrence is kept and the one
  whose line prints the field's usual label before it ("TOTAL", not "CASH") wins, then the one
  nearest the place the field is usually printed.

Like `docformer.grounding.ground_answer` (which asks which words an answer was read from), the
search tries stages in order, from the strictest match to the loosest, and stops at the first
that finds something: a loose match is only trusted when no strict one exists.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

from docformer.document import OCRResult
from docformer.grounding import (
    FUZZY_MIN_RATIO,
    FUZZY_WORD_SLACK,
    MIN_SUBSTRING_CHARS,
    union_box,
)

# A value's printed label is the words its line prints just before it ("Total Payable:"); this
# many of them are read.
LABEL_WORDS = 3

# The stages of `find_value_runs`, strictest first; the first that finds anything wins.
ALIGNMENT_METHODS = ("exact", "case-insensitive", "spacing", "substring", "fuzzy")


# --- aligning labelled values (word tagging) --------------------------------------------------


@dataclass(frozen=True)
class ValueAlignment:
    """Where a labelled value is printed: the words a tagger should tag with its field."""

    field: str
    page: int  # index into the document's pages
    word_indices: tuple[int, ...]  # consecutive run of that page's ocr.words, reading order
    method: str  # one of ALIGNMENT_METHODS
    score: float  # 100 for the non-fuzzy stages, rapidfuzz ratio for fuzzy
    # The value's other runs found at the same stage, as (page, word indices): the label says
    # what is printed, not which of its copies the user read (the report counts such labels).
    also_printed: tuple[tuple[int, tuple[int, ...]], ...] = ()


def find_value_runs(
    value: str, ocr: OCRResult, min_ratio: float = FUZZY_MIN_RATIO
) -> tuple[str, float, list[list[int]]] | None:
    """All runs of words holding `value` at the first stage that finds any: (method, score, runs).

    Every occurrence is returned, not just the first, because a value printed twice can only be
    told apart by where its field is usually printed, which the caller knows and this does not.
    Runs are lists of indices into `ocr.words`, in reading order; blank words are skipped.
    Stages, strictest first (the same as `ground_answer`'s, plus "spacing"):

    1. exact: the run's texts joined by single spaces equal the whitespace-collapsed value;
    2. case-insensitive: the same, lower-cased ("22 MAR 18" printed "22 Mar 18");
    3. spacing: the same with all whitespace removed, the run starting and ending on word
       boundaries ("LEVEL 6" printed "Level6", "SS21/39,47400" printed "SS21/39, 47400");
    4. substring: the lower-cased value (at least `MIN_SUBSTRING_CHARS` long) inside the joined
       text, starting or ending on a word boundary ("RM9.00" holds "9.00"); the run is the words
       it overlaps. Unlike `ground_answer`, an end that is not on a boundary may not cut a
       number or a word in two: "19.00" does not hold "9.00", "TANJUNG" does not hold "TAN";
       with every occurrence kept, such matches would otherwise compete with the right one;
    5. fuzzy: runs of about as many words as the value (± `FUZZY_WORD_SLACK`) whose lower-cased
       `fuzz.ratio` is the best one and at least `min_ratio` (OCR typos: "TEO HENG" for "TED
       HENG"). Of tied runs that overlap, the one of fewer words is kept.
    """
    target = " ".join(value.split())
    indices = [i for i, word in enumerate(ocr.words) if word.text.strip()]
    if not target or not indices:
        return None
    texts = [" ".join(ocr.words[i].text.split()) for i in indices]
    lowered, lowered_target = [t.lower() for t in texts], target.lower()

    def on_page(runs: Iterable[Sequence[int]]) -> list[list[int]]:
        return [[indices[p] for p in run] for run in runs]

    runs = _find_runs(target, texts)
    if runs:
        return "exact", 100.0, on_page(runs)
    runs = _find_runs(lowered_target, lowered)
    if runs:
        return "case-insensitive", 100.0, on_page(runs)
    unspaced = [t.replace(" ", "") for t in lowered]
    runs = _find_runs(lowered_target.replace(" ", ""), unspaced, separator="")
    if runs:
        return "spacing", 100.0, on_page(runs)
    if len(target) >= MIN_SUBSTRING_CHARS:
        runs = _find_runs(lowered_target, lowered, whole_words=False)
        if runs:
            return "substring", 100.0, on_page(runs)

    found = _best_fuzzy_runs(lowered_target, lowered, min_ratio)
    if found is None:
        return None
    score, runs = found
    return "fuzzy", score, on_page(runs)


def align_value(
    field: str,
    value: str,
    pages: Sequence[OCRResult],
    usual_place: tuple[float, float] | None = None,
    min_ratio: float = FUZZY_MIN_RATIO,
    usual_label: Mapping[str, float] | None = None,
) -> ValueAlignment | None:
    """The run of words where `value` is printed in a document, or None if it is nowhere.

    Every page is searched and candidates from all pages compete at the strictest stage any
    page reaches (see `find_value_runs`). Of several candidates, the one whose printed label
    (`printed_label`) holds the word most typical of the field's labels (`usual_label`, from
    `usual_labels`) wins; among equals, the one whose centre is nearest `usual_place` (x, y as
    fractions of the page size); without either, the first in reading order, first page first.
    """
    found = _value_candidates(value, pages, min_ratio)
    if found is None:
        return None
    return _choose(field, found, pages, usual_place, usual_label)


def printed_label(word_indices: Sequence[int], ocr: OCRResult) -> set[str]:
    """The lower-case letter words of up to `LABEL_WORDS` words printed before the run on its
    line: {"total", "payable"} for "Total Payable: 9.00"."""
    first = min(word_indices)
    line = ocr.words[first].line_id
    before = [word.text for word in ocr.words[:first] if word.line_id == line][-LABEL_WORDS:]
    return {piece for text in before for piece in re.findall(r"[^\W\d_]+", text.lower())}


def usual_labels(
    alignments: Iterable[tuple[ValueAlignment, OCRResult]],
) -> dict[str, dict[str, float]]:
    """Per field, for each word: the share of its alignments whose printed label holds it.

    A receipt prints its total two or three times (TOTAL, ROUNDED, CASH when paid exactly); the
    receipts that print it once say which label marks a total, so the copy after "TOTAL" rather
    than the one after "CASH" is tagged, and the tagger learns one consistent rule. Chosen by
    place alone, 55 of SROIE's 346 twice-printed totals went to the CASH line (BENCHMARKS.md:
    the tagging head)."""
    counts: dict[str, dict[str, int]] = {}
    seen: dict[str, int] = {}
    for alignment, ocr in alignments:
        seen[alignment.field] = seen.get(alignment.field, 0) + 1
        words = counts.setdefault(alignment.field, {})
        for word in printed_label(alignment.word_indices, ocr):
            words[word] = words.get(word, 0) + 1
    return {
        name: {word: count / seen[name] for word, count in words.items()}
        for name, words in counts.items()
    }


def usual_places(
    alignments: Iterable[tuple[ValueAlignment, OCRResult]],
) -> dict[str, tuple[float, float]]:
    """Per field, the mean centre (x, y as fractions 0..1 of the page size) of its alignments.

    Fractions, not pixels, so that receipts scanned at different sizes agree on where, say, the
    total usually is. Each alignment comes with the OCR result of its own page.
    """
    sums: dict[str, list[float]] = {}
    for alignment, ocr in alignments:
        x, y = _run_centre(alignment.word_indices, ocr)
        total = sums.setdefault(alignment.field, [0.0, 0.0, 0.0])
        total[0] += x
        total[1] += y
        total[2] += 1
    return {name: (sx / n, sy / n) for name, (sx, sy, n) in sums.items()}


@dataclass
class AlignmentReport:
    """Per field: how many labels were seen, how many were aligned, and by which stage.

    A field aligned mostly by "fuzzy" or "substring", or rarely at all, points at labels that
    do not say what is printed (or at OCR that misreads it) before any tagger is trained on them.
    """

    labels: dict[str, int] = field(default_factory=dict)
    aligned: dict[str, int] = field(default_factory=dict)
    by_method: dict[str, dict[str, int]] = field(default_factory=dict)
    printed_more_than_once: dict[str, int] = field(default_factory=dict)

    def add(self, field: str, alignment: ValueAlignment | None) -> None:
        """Count one label of `field`, aligned by `alignment` or not aligned (None)."""
        self.labels[field] = self.labels.get(field, 0) + 1
        self.aligned.setdefault(field, 0)
        methods = self.by_method.setdefault(field, {})
        self.printed_more_than_once.setdefault(field, 0)
        if alignment is not None:
            self.aligned[field] += 1
            methods[alignment.method] = methods.get(alignment.method, 0) + 1
            self.printed_more_than_once[field] += bool(alignment.also_printed)

    def to_dict(self) -> dict[str, dict[str, object]]:
        """JSON-safe: {field: {"labels": n, "aligned": m, "by_method": {method: k},
        "printed_more_than_once": j}}, methods in stage order (strictest first)."""
        return {
            name: {
                "labels": count,
                "aligned": self.aligned.get(name, 0),
                "by_method": {
                    method: self.by_method[name][method]
                    for method in ALIGNMENT_METHODS
                    if method in self.by_method.get(name, {})
                },
                "printed_more_than_once": self.printed_more_than_once.get(name, 0),
            }
            for name, count in self.labels.items()
        }


def align_examples(
    examples: Sequence[tuple[Mapping[str, str], Sequence[OCRResult]]],
    min_ratio: float = FUZZY_MIN_RATIO,
) -> tuple[list[dict[str, ValueAlignment]], AlignmentReport]:
    """Align every labelled value of every example: (per example {field: alignment}, report).

    Two passes, because an ambiguous value (printed more than once) is best resolved by where
    its field is usually printed, and that is only known after looking at all examples:

    1. every value is searched (`find_value_runs` on each page); values found exactly once
       are aligned, and their centres give each field's usual place (`usual_places`);
    2. values found more than once go to the run printed after their field's usual label
       (`usual_labels`), then nearest their field's usual place, or to the first in reading
       order when the field was never found exactly once; the other runs are kept in
       `also_printed` (counted in the report).

    Example i of the result holds only the fields aligned in example i. Blank values (a label
    with nothing to find) are neither aligned nor counted in the report.
    """
    searched: list[list[tuple[str, tuple[str, float, list[tuple[int, list[int]]]] | None]]] = []
    unique: list[tuple[ValueAlignment, OCRResult]] = []
    for labels, pages in examples:
        found_here = []
        for name, value in labels.items():
            if not value or not value.strip():
                continue
            found = _value_candidates(value, pages, min_ratio)
            found_here.append((name, found))
            if found is not None and len(found[2]) == 1:
                method, score, [(page, run)] = found
                unique.append((ValueAlignment(name, page, tuple(run), method, score), pages[page]))
        searched.append(found_here)
    places = usual_places(unique)
    labels_by_field = usual_labels(unique)

    report = AlignmentReport()
    results: list[dict[str, ValueAlignment]] = []
    for (_, pages), found_here in zip(examples, searched, strict=True):
        aligned: dict[str, ValueAlignment] = {}
        for name, found in found_here:
            alignment = None
            if found is not None:
                alignment = _choose(name, found, pages, places.get(name), labels_by_field.get(name))
                aligned[name] = alignment
            report.add(name, alignment)
        results.append(aligned)
    return results, report


def _value_candidates(
    value: str, pages: Sequence[OCRResult], min_ratio: float
) -> tuple[str, float, list[tuple[int, list[int]]]] | None:
    """(method, score, [(page, run), ...]) over all pages at the strictest stage any page
    reaches (for fuzzy: the best score any page reaches), in reading order, first page first."""
    found = [
        (page, result)
        for page, ocr in enumerate(pages)
        if (result := find_value_runs(value, ocr, min_ratio)) is not None
    ]
    if not found:
        return None
    method = min((result[0] for _, result in found), key=ALIGNMENT_METHODS.index)
    score = max(result[1] for _, result in found if result[0] == method)
    candidates = [
        (page, run)
        for page, (page_method, page_score, runs) in found
        if page_method == method and page_score == score
        for run in runs
    ]
    return method, score, candidates


def _choose(
    field: str,
    found: tuple[str, float, list[tuple[int, list[int]]]],
    pages: Sequence[OCRResult],
    usual_place: tuple[float, float] | None,
    usual_label: Mapping[str, float] | None = None,
) -> ValueAlignment:
    """The alignment of `field` at the candidate best labelled and nearest `usual_place`, the
    others kept as `also_printed`."""
    method, score, candidates = found
    best_labelled = candidates
    if usual_label and len(candidates) > 1:
        # A candidate's label is as typical as its most typical word ("TOTAL" in "SUB TOTAL").
        typical = [
            max((usual_label.get(w, 0.0) for w in printed_label(run, pages[page])), default=0.0)
            for page, run in candidates
        ]
        best_labelled = [c for c, t in zip(candidates, typical, strict=True) if t == max(typical)]
    page, run = _nearest_candidate(best_labelled, pages, usual_place)
    others = tuple((p, tuple(r)) for p, r in candidates if (p, r) != (page, run))
    return ValueAlignment(field, page, tuple(run), method, score, others)


def _nearest_candidate(
    candidates: Sequence[tuple[int, list[int]]],
    pages: Sequence[OCRResult],
    usual_place: tuple[float, float] | None,
) -> tuple[int, list[int]]:
    """The candidate whose centre is nearest `usual_place`; the first on ties or without one."""
    if usual_place is None or len(candidates) == 1:
        return candidates[0]
    return min(
        candidates,
        key=lambda candidate: math.dist(
            _run_centre(candidate[1], pages[candidate[0]]), usual_place
        ),
    )


def _run_centre(word_indices: Sequence[int], ocr: OCRResult) -> tuple[float, float]:
    """Centre of the run's union box as fractions of the page's width and height."""
    x0, y0, x1, y1 = union_box([ocr.words[i].box for i in word_indices])
    return (x0 + x1) / 2 / max(ocr.width, 1), (y0 + y1) / 2 / max(ocr.height, 1)


def _find_runs(
    target: str, texts: Sequence[str], separator: str = " ", whole_words: bool = True
) -> list[list[int]]:
    """Positions of every run of `texts` whose `separator`-joined text is `target` (whole_words),
    or that overlaps an occurrence of `target` starting or ending on a word boundary without
    cutting a number or a word in two at its other end; each run once, in reading order."""
    starts, ends, offset = [], [], 0
    for text in texts:
        starts.append(offset)
        ends.append(offset + len(text))
        offset += len(text) + len(separator)
    joined = separator.join(texts)
    start_set, end_set = set(starts), set(ends)
    runs: dict[tuple[int, ...], None] = {}  # insertion-ordered set
    position = joined.find(target) if target else -1
    while position >= 0:
        end = position + len(target)
        at_start, at_end = position in start_set, end in end_set
        if whole_words:
            keep = at_start and at_end
        else:
            keep = (at_start or at_end) and (
                (at_start or not _cuts_token(joined, position))
                and (at_end or not _cuts_token(joined, end))
            )
        if keep:
            # Words overlapping [position, end): the first ending after it starts, up to the
            # last starting before it ends.
            first, last = bisect_right(ends, position), bisect_left(starts, end)
            runs[tuple(range(first, last))] = None
        position = joined.find(target, position + 1)
    return [list(run) for run in runs]


def _cuts_token(joined: str, cut: int) -> bool:
    """Whether cutting `joined` before index `cut` splits a run of digits or of letters."""
    if cut <= 0 or cut >= len(joined):
        return False
    before, after = joined[cut - 1], joined[cut]
    return (before.isdigit() and after.isdigit()) or (before.isalpha() and after.isalpha())


def _best_fuzzy_runs(
    target: str, texts: Sequence[str], min_ratio: float
) -> tuple[float, list[list[int]]] | None:
    """The best `fuzz.ratio` of `target` against runs of about as many words, if at least
    `min_ratio`, and the runs that reach it: overlapping ties keep the run of fewer words."""
    n_words = len(target.split())
    runs: list[range] = []
    candidates: list[str] = []
    for n in range(max(1, n_words - FUZZY_WORD_SLACK), n_words + FUZZY_WORD_SLACK + 1):
        for start in range(0, len(texts) - n + 1):
            runs.append(range(start, start + n))
            candidates.append(" ".join(texts[start : start + n]))
    matches = process.extract(
        target, candidates, scorer=fuzz.ratio, score_cutoff=min_ratio, limit=None
    )
    if not matches:
        return None
    best = max(score for _, score, _ in matches)
    # Candidates are ordered by word count, then start: fewer words claim their place first.
    tied = sorted(position for _, score, position in matches if score == best)
    kept: list[range] = []
    taken: set[int] = set()
    for position in tied:
        run = runs[position]
        if taken.isdisjoint(run):
            kept.append(run)
            taken.update(run)
    kept.sort(key=lambda run: (run.start, len(run)))
    return float(best), [list(run) for run in kept]


__all__ = [
    "ALIGNMENT_METHODS",
    "AlignmentReport",
    "ValueAlignment",
    "align_examples",
    "align_value",
    "find_value_runs",
    "printed_label",
    "usual_labels",
    "usual_places",
]
