"""Word tagging: the fixed-schema extraction of `DocFormerV2ForTokenClassification`.

Every OCR word of a page is tagged over the field schema in BIO tags (`config.tag_names`:
"O", then "B-f", "I-f" per field f). The pieces, in the order a page goes through them:

1. `tag_windows` cuts a page's OCR tokens into encoder rows (the processor's windows, no prompt:
   the schema lives in the head) and, for training, puts each word's tag on its first token.
2. The model gives every token a distribution over the tags; `WordTagMerger` keeps, for each
   word, the distribution of its first token from the window where that word sits farthest from
   a window edge (it saw the most context on both sides there).
3. `decode_spans` reads the words' tags as BIO spans, per field: the most likely sequence of
   tags in which no field's run is broken into by another's (`consistent_tags`), each span with a
   confidence from the tag marginals: the product of its words' chosen-tag probabilities and of
   the probability that the word after it does not continue it. That is the model's probability
   of exactly this span under independent per-word decisions, so, like a generated answer's
   product of token probabilities, a long address is rightly less sure than a date.
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
from docformer.normalization import amount_digits, is_amount_field, is_date_field, typed_spans

IGNORE_INDEX = -100
OUTSIDE = 0  # the "O" tag's id
# `decode_spans` offers a field no tag path found at its most likely first word when that word
# is at least this likely to begin it (BENCHMARKS.md: the tagging head).
MIN_START_PROBABILITY = 0.1


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
) -> dict[str, list[TaggedSpan]]:
    """BIO spans of one page from each word's tag distribution (rows of NaN: a word no window
    saw, such as a blank one, are skipped), the tags chosen by `consistent_tags`. An I-f that
    does not follow f opens a span, as a lenient BIO reading does: the model marked the word as
    part of f and that is kept. A field without a span is offered at the word most likely to
    begin it when that word is at least `min_start` likely to (see below)."""
    ids = tag_ids(fields)
    field_of = {}
    for name, (begin, inside) in ids.items():
        field_of[begin] = (name, True)
        field_of[inside] = (name, False)
    seen = ~np.isnan(word_probs).any(axis=1)
    if ocr is not None:
        seen &= np.array([bool(w.text.strip()) for w in ocr.words], dtype=bool)
    chosen = np.full(len(word_probs), OUTSIDE, dtype=np.int64)
    chosen[seen] = consistent_tags(word_probs[seen], fields)
    spans: dict[str, list[TaggedSpan]] = {name: [] for name in fields}

    def close(name: str, words: list[int]) -> None:
        log_p = sum(math.log(max(float(word_probs[w, chosen[w]]), 1e-12)) for w in words)
        following = _next_seen(seen, words[-1])
        if following is not None:
            log_p += math.log(max(1.0 - float(word_probs[following, ids[name][1]]), 1e-12))
        spans[name].append(TaggedSpan(name, tuple(words), math.exp(log_p)))

    current: tuple[str, list[int]] | None = None
    for word in range(len(word_probs)):
        if not seen[word]:
            continue  # unseen words neither open nor close a span
        tag = int(chosen[word])
        if tag in field_of:
            name, begins = field_of[tag]
            if current is not None and current[0] == name and not begins:
                current[1].append(word)
                continue
            if current is not None:
                close(*current)
            current = (name, [word])
        elif current is not None:
            close(*current)
            current = None
    if current is not None:
        close(*current)
    # A field the path leaves out is still offered where it most likely begins, when that word
    # is at least `min_start` likely to begin it, with the words after it that are as likely to
    # continue it: a model that ranks the right amount first, but not above O, would otherwise
    # answer nothing. Such a span's confidence is computed as any span's, from those low
    # probabilities, so the reliability table shows it for what it is.
    for name, found in spans.items():
        begin, inside = ids[name]
        start_probs = np.where(seen, np.nan_to_num(word_probs[:, begin], nan=0.0), 0.0)
        start = int(start_probs.argmax()) if len(start_probs) else 0
        if found or not len(start_probs) or start_probs[start] < min_start:
            continue
        chosen[start], words = begin, [start]
        following = _next_seen(seen, start)
        while following is not None and word_probs[following, inside] >= min_start:
            chosen[following] = inside
            words.append(following)
            following = _next_seen(seen, following)
        close(name, words)
    return spans


def consistent_tags(word_probs: np.ndarray, fields: Sequence[str]) -> np.ndarray:
    """The most likely tag of every word (rows: words in reading order, columns: tag
    probabilities) under one rule: I-f may follow B-f, I-f or O, never another field's tag.

    Per-word argmax lets a half-trained or unsure model interleave fields ("I-company I-address
    I-company" over one shop name), which reads as three broken spans; the best path under the
    rule (Viterbi over log-probabilities) keeps each run to one field. I-f after O stays allowed,
    as in the lenient BIO reading `decode_spans` keeps."""
    n_words, n_tags = word_probs.shape
    if n_words == 0:
        return np.zeros(0, dtype=np.int64)
    log_p = np.log(np.clip(word_probs, 1e-12, None))
    allowed = np.ones((n_tags, n_tags), dtype=bool)  # allowed[previous, current]
    for begin, inside in tag_ids(fields).values():
        allowed[:, inside] = False
        allowed[[OUTSIDE, begin, inside], inside] = True
    transition = np.where(allowed, 0.0, -np.inf)
    score = log_p[0].copy()
    back = np.zeros((n_words, n_tags), dtype=np.int64)
    for word in range(1, n_words):
        candidates = score[:, None] + transition  # (previous, current)
        back[word] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_p[word]
    path = np.zeros(n_words, dtype=np.int64)
    path[-1] = int(score.argmax())
    for word in range(n_words - 1, 0, -1):
        path[word - 1] = back[word, path[word]]
    return path


def _next_seen(seen: np.ndarray, word: int) -> int | None:
    for following in range(word + 1, len(seen)):
        if seen[following]:
            return following
    return None


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
    "consistent_tags",
    "decode_spans",
    "span_text",
    "span_value",
    "tag_ids",
    "tag_windows",
    "word_tags",
]
