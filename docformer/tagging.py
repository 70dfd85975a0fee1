"""Word tagging: the fixed-schema extraction of `DocFormerV2ForTokenClassification`.

Every OCR word of a page is tagged over the field schema in BIO tags (`config.tag_names`:
"O", then "B-f", "I-f" per field f). The pieces, in the order a page goes through them:

1. `tag_windows` cuts a page's OCR tokens into encoder rows (the processor's windows, no prompt:
   the schema lives in the head) and, for training, puts each word's tag on its first token.
2. The model gives every token a distribution over the tags; `WordTagMerger` keeps, for each
   word, the distribution of its first token from the window where that word sits farthest from
   a window edge (it saw the most context on both sides there).
3. `decode_spans` reads, per field, the run of words most likely to be its value: the run with
   the highest log-odds of its words being in the field (a doubtful word inside a sure run is
   kept), a date or amount only from a run that holds one. Its confidence comes from the tag
   marginals: the product of its words' probabilities and of the probability that the word
   after it does not continue it. That is the model's probability of exactly this span under
   independent per-word decisions, so, like a generated answer's product of token
   probabilities, a long address is rightly less sure than a date.
4. `span_value` writes a span's words in reading order; a date or amount is cut to the typed
   piece inside it ("Total:RM9.00" -> "9.00", as `docformer.normalization.typed_spans` finds
   them), so the tagger may mark a whole printed word while the value stays what was labelled.

Training targets come from `docformer.alignment`: a labelled value is aligned to a run of OCR
words, the first tagged B-f and the rest I-f.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from docformer.document import OCRResult
from docformer.models.docformerv2 import DocFormerV2Processor, EncoderRow
from docformer.normalization import (
    amount_digits,
    is_amount_field,
    is_date_field,
    normalize_date,
    typed_spans,
)

IGNORE_INDEX = -100
OUTSIDE = 0  # the "O" tag's id
# `decode_spans` starts a field's run only at a word at least this likely to be in the field
# (BENCHMARKS.md: the tagging head).
MIN_START_PROBABILITY = 0.1
# The longest run a date or amount is read from ("27 MAR 2018", "RM 9.00"; "Total: RM 12.50").
MAX_TYPED_WORDS = 6


def tag_ids(fields: Sequence[str]) -> dict[str, tuple[int, int]]:
    """field -> (id of B-field, id of I-field), in the order of `config.tag_names`."""
    return {name: (1 + 2 * i, 2 + 2 * i) for i, name in enumerate(fields)}


def word_tags(n_words: int, spans: Mapping[str, Sequence[int]], fields: Sequence[str]) -> list[int]:
    """Tag id of every word of a page, given each field's words there (a run in reading order)."""
    ids = tag_ids(fields)
    tags = [OUTSIDE] * n_words
    for name, words in spans.items():
        if name not in ids or not words:
            continue
        begin, inside = ids[name]
        for position, word in enumerate(sorted(words)):
            tags[word] = begin if position == 0 else inside
    return tags


@dataclass
class TagWindow:
    """One encoder row of a page and, for training, the tag target of each of its tokens."""

    row: EncoderRow
    token_tags: list[int]  # IGNORE_INDEX except on each word's first token (training only)
    first_tokens: list[tuple[int, int]]  # (token position, word index) of each word's 1st token
    n_tokens: int  # OCR tokens in the row (the row also ends with </s>)


def tag_windows(
    processor: DocFormerV2Processor, ocr: OCRResult, tags: Sequence[int] | None = None
) -> list[TagWindow]:
    """A page's encoder rows for tagging. `tags` (one per word) gives the training targets."""
    tokens = processor.tokenize_page(ocr)
    if not len(tokens):
        return []
    windows = []
    for start, end in processor.window_spans(tokens, processor.ocr_budget([])):
        piece = tokens.slice(start, end)
        row = processor.build_row(piece, [])
        token_tags = [IGNORE_INDEX] * len(row.input_ids)
        first_tokens = []
        previous = None
        for position, word in enumerate(piece.word_ids):
            # A window cut inside a word starts with that word's later pieces: they are not
            # its first token, and the window that holds the first one decides it.
            at_first = word != previous and (
                position > 0 or start == 0 or _starts_word(tokens, start)
            )
            if at_first:
                first_tokens.append((position, word))
                if tags is not None:
                    token_tags[position] = int(tags[word])
            previous = word
        windows.append(TagWindow(row, token_tags, first_tokens, len(piece)))
    return windows


def _starts_word(tokens, start: int) -> bool:
    return tokens.word_ids[start - 1] != tokens.word_ids[start]


class WordTagMerger:
    """Per word of one page, the tag distribution from the window that saw it with the most
    context: windows overlap, and a word near a window's edge is read with half its line."""

    def __init__(self, n_words: int, n_tags: int):
        self.probs = np.full((n_words, n_tags), np.nan, dtype=np.float32)
        self.margin = np.full(n_words, -1, dtype=np.int64)

    def add(self, window: TagWindow, token_probs: np.ndarray) -> None:
        """token_probs: (tokens of the row, n_tags) softmax of the window's logits."""
        for position, word in window.first_tokens:
            margin = min(position, window.n_tokens - 1 - position)
            if margin > self.margin[word]:
                self.margin[word] = margin
                self.probs[word] = token_probs[position]


@dataclass(frozen=True)
class TaggedSpan:
    field: str
    word_indices: tuple[int, ...]  # consecutive run of the page's words, reading order
    confidence: float


def decode_spans(
    word_probs: np.ndarray,
    fields: Sequence[str],
    ocr: OCRResult | None = None,
    min_start: float = MIN_START_PROBABILITY,
) -> dict[str, TaggedSpan]:
    """Per field, the run of words of one page most likely to be its value (fields with none
    are left out). Rows of `word_probs` are the words' tag distributions in reading order; a
    row of NaN (a word no window saw, such as a blank one) is skipped, neither opening nor
    closing a run.

    A run is scored by log-odds: of its first word opening the field (B-f), plus, for each
    word after it, of that word being in the field (B-f or I-f). The best-scoring run wins, so
    a word the model doubts inside a run it is sure of stays in (an address's postcode at 0.3
    between lines at 0.99), while the run does not reach past words it gains nothing from. The
    start is where the model puts B: scoring it on B-f or I-f instead pulls a company name's
    start past its first word whenever the second is more surely in the field ("Sims, Cox and
    Lawson" read as "Cox and Lawson"), and scoring later words on I-f alone cuts a run where
    the model hesitates between B and I ("Rogers, Mccall and Ali" read as "Mccall and"). Reading
    the argmax tags instead breaks such a run in two and keeps one piece. A run only starts at
    a word at least `min_start` likely to be in the field, so a field the page lacks stays
    unanswered and one the model ranks right but not above O is still offered.

    With `ocr`, a date or amount field's run must hold a date or amount
    (`docformer.normalization.typed_spans`) and is at most `MAX_TYPED_WORDS` words: the type
    rules out "19.00" as a date or "21:13" as a total, however the model leans. The type, not
    the B tag, bounds such a run, so it opens at any word in the field and continues over I-f
    (BENCHMARKS.md: the tagging head, decoding).

    The confidence is the probability of exactly that run under independent per-word tags: its
    first word in the field, each later word continuing it, and the word after it not
    continuing it."""
    ids = tag_ids(fields)
    seen = ~np.isnan(word_probs).any(axis=1)
    if ocr is not None:
        seen &= np.array([bool(w.text.strip()) for w in ocr.words], dtype=bool)
    order = np.flatnonzero(seen)  # the words that count, in reading order
    spans: dict[str, TaggedSpan] = {}
    if not len(order):
        return spans
    probs = np.clip(np.nan_to_num(word_probs[order], nan=0.0), 1e-12, 1 - 1e-6)
    for name, (begin, inside) in ids.items():
        p_in_field = np.clip(probs[:, begin] + probs[:, inside], 1e-12, 1 - 1e-6)
        starts = np.flatnonzero(p_in_field >= min_start)
        if ocr is not None and typed_spans(name, "") is not None:
            found = _best_typed_value(name, ocr, order, starts, p_in_field, probs[:, inside])
        else:
            best = _best_run(starts, _log_odds(probs[:, begin]), _log_odds(p_in_field))
            found = best and (best, _span_probability(*best, p_in_field, p_in_field))
        if found:
            (first, last), confidence = found
            words = tuple(int(w) for w in order[first : last + 1])
            spans[name] = TaggedSpan(name, words, confidence)
    return spans


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _best_run(
    starts: np.ndarray, start_score: np.ndarray, inside_score: np.ndarray
) -> tuple[int, int] | None:
    """(first, last) positions of the best-scoring run that begins at one of `starts`: the
    maximum-sum run, each position either opening a run or extending the best run that ends
    just before it."""
    allowed = np.zeros(len(start_score), dtype=bool)
    allowed[starts] = True
    best, best_score = None, -math.inf
    run_first, run_score = -1, -math.inf
    for position in range(len(start_score)):
        extended = run_score + inside_score[position]
        opened = start_score[position] if allowed[position] else -math.inf
        if opened >= extended:
            run_first, run_score = position, opened
        else:
            run_score = extended
        if run_first >= 0 and run_score > best_score:
            best, best_score = (run_first, position), run_score
    return best


def _typed_runs(
    name: str,
    ocr: OCRResult,
    order: np.ndarray,
    starts: np.ndarray,
    p_start: np.ndarray,
    p_continue: np.ndarray,
) -> list[tuple[float, int, int, str]]:
    """Every run of at most `MAX_TYPED_WORDS` words that opens at one of `starts` and whose
    text holds a value of the field's type: (log-odds score, first, last, the value's key)."""
    start_score, inside_score = _log_odds(p_start), _log_odds(p_continue)
    runs = []
    for first in starts:
        score = start_score[first]
        for last in range(first, min(first + MAX_TYPED_WORDS, len(order))):
            if last > first:
                score += inside_score[last]
            text = " ".join(ocr.words[int(w)].text for w in order[first : last + 1])
            if typed_spans(name, text):
                runs.append((float(score), int(first), last, _value_key(name, text)))
    return runs


def _value_key(name: str, printed: str) -> str:
    """What two printings of one value share: an amount's digits, a date's day."""
    value = span_value(name, printed)
    if is_date_field(name):
        day = normalize_date(value)
        return day.isoformat() if day is not None else value
    return value


def _best_typed_value(
    name: str,
    ocr: OCRResult,
    order: np.ndarray,
    starts: np.ndarray,
    p_start: np.ndarray,
    p_continue: np.ndarray,
) -> tuple[tuple[int, int], float] | None:
    """The typed value the page's runs vote for, and its surest run.

    A receipt prints its total two or three times (TOTAL, ROUNDED, CASH when paid exactly), and
    the model spreads its belief over the copies; any copy is the right answer. So each value
    is scored by the probability that at least one of its printings is the field (noisy-or of
    the exact-span probabilities of non-overlapping runs holding it, surest first), and it is
    answered with its surest run, whose box grounds it. A single printing scores as before."""
    runs = _typed_runs(name, ocr, order, starts, p_start, p_continue)
    taken = np.zeros(len(order), dtype=bool)
    miss: dict[str, float] = {}  # value key -> P(none of its printings is the field)
    surest: dict[str, tuple[int, int]] = {}
    for _, first, last, key in sorted(runs, key=lambda run: -run[0]):
        if taken[first : last + 1].any():
            continue
        taken[first : last + 1] = True
        confidence = _span_probability(first, last, p_start, p_continue)
        miss[key] = miss.get(key, 1.0) * (1.0 - confidence)
        surest.setdefault(key, (first, last))
    if not miss:
        return None
    key = min(miss, key=miss.__getitem__)
    return surest[key], 1.0 - miss[key]


def _span_probability(first: int, last: int, p_start: np.ndarray, p_continue: np.ndarray) -> float:
    """P(exactly words first..last form the field's run) under independent word tags: the
    first opens it, each later one continues it, the word after it does not."""
    log_p = math.log(p_start[first]) + float(np.log(p_continue[first + 1 : last + 1]).sum())
    if last + 1 < len(p_continue):
        log_p += math.log1p(-p_continue[last + 1])
    return math.exp(log_p)


def span_text(ocr: OCRResult, span: TaggedSpan) -> str:
    """The span's words as printed, joined by single spaces."""
    return " ".join(" ".join(ocr.words[i].text.split()) for i in span.word_indices).strip()


def span_value(name: str, printed: str) -> str:
    """The value of field `name` in a tagged span's text: a date or amount is cut to the typed
    piece the span holds (an amount without its currency mark), anything else is the text.
    """
    if not (is_date_field(name) or is_amount_field(name)):
        return printed
    pieces = typed_spans(name, printed) or []
    if not pieces:
        return printed
    if is_amount_field(name):
        return amount_digits(pieces[-1]) or pieces[-1]  # the last amount: after its label
    return pieces[0]


__all__ = [
    "IGNORE_INDEX",
    "TagWindow",
    "TaggedSpan",
    "WordTagMerger",
    "decode_spans",
    "span_text",
    "span_value",
    "tag_ids",
    "tag_windows",
    "word_tags",
]
