"""Key-value extraction as generation: the prompt, the target sequence and reading answers back.

One generation per page window answers every field at once. The prompt names the fields wanted,
in order; the decoder writes them back in that order, each as `name: value`, separated by the
`<extra_id_99>` sentinel:

    prompt:  "extract: company | date | address | total"
    target:  "company: ACME SDN BHD<extra_id_99>date: 25/12/2018<extra_id_99>address: ...
              <extra_id_99>total: 9.00</s>"

Why all fields in one sequence rather than one prompt per field: the encoder (by far the larger
cost: visual tokens + up to 512 text tokens) runs once per window instead of once per field, which
is what makes training and extraction affordable on a CPU. Why a sentinel as separator: it is one
token that never occurs in a value (sentinels are special tokens, never produced by tokenizing
text), so the generated ids split into fields exactly, and each field's confidence is the product
of its own tokens' probabilities. The last pre-training sentinels are almost never used by span
corruption (a page needs 100 masked spans to reach it), so `<extra_id_99>` is free to take this
meaning. A field the document does not have is written with an empty value (`tax: `), so the
model says "absent" explicitly and with a probability.

Decoding is held to this format by `PageSpanConstraint`: the field names are written for the
model, and each value must be a piece of the page's own text (or empty); a date or an amount
must be one of the page's dates or amounts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from math import prod

import torch
from transformers import PreTrainedTokenizerBase

from docformer.normalization import typed_spans

WORD_START = "▁"  # the Metaspace mark that begins every word's first piece (docformer.tokenization)

# Fields the shipped checkpoint is trained to extract (receipts and invoices), in prompt order.
DEFAULT_FIELDS: tuple[str, ...] = (
    "company",
    "date",
    "address",
    "total",
    "invoice_number",
    "tax",
    "currency",
)
FIELD_SEPARATOR = "<extra_id_99>"
PROMPT_PREFIX = "extract:"


@dataclass
class FieldAnswer:
    """One field read from a generation: raw text, the probability of exactly this text (its
    tokens and the separator or end that closed it), and its tokens' probabilities."""

    name: str
    value: str
    confidence: float
    token_probs: list[float] = field(default_factory=list)


def build_prompt(fields: Sequence[str]) -> str:
    """The encoder prompt that asks for `fields`, in this order."""
    if not fields:
        raise ValueError("at least one field must be asked for")
    return f"{PROMPT_PREFIX} " + " | ".join(fields)


def build_target(values: Mapping[str, str | None], fields: Sequence[str]) -> str:
    """The decoder target for a document whose labels are `values` (missing or None: absent)."""
    parts = []
    for name in fields:
        value = values.get(name)
        parts.append(f"{name}: {' '.join(str(value).split()) if value is not None else ''}")
    return FIELD_SEPARATOR.join(parts)


def separator_id(tokenizer: PreTrainedTokenizerBase) -> int:
    token_id = tokenizer.convert_tokens_to_ids(FIELD_SEPARATOR)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(f"tokenizer lacks the {FIELD_SEPARATOR} token")
    return token_id


def parse_generation(
    token_ids: Sequence[int],
    token_probs: Sequence[float],
    tokenizer: PreTrainedTokenizerBase,
    fields: Sequence[str],
) -> dict[str, FieldAnswer]:
    """Generated ids (and their probabilities) -> one `FieldAnswer` per requested field.

    Segments are split at the separator; each is `name: value`. A segment naming a field that
    was not asked for is ignored; a field the model did not write back is absent (empty value,
    confidence 0). When a name comes twice, the first one counts.
    """
    sep, eos, pad = separator_id(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id
    wanted = set(fields)
    answers: dict[str, FieldAnswer] = {}
    segment_ids: list[int] = []
    segment_probs: list[float] = []

    def close_segment(closing_prob: float) -> None:
        text = tokenizer.decode(segment_ids, skip_special_tokens=True).strip()
        name, colon, value = text.partition(":")
        name = name.strip()
        if colon and name in wanted and name not in answers:
            probs = [*segment_probs, closing_prob]
            answers[name] = FieldAnswer(name, " ".join(value.split()), float(prod(probs)), probs)

    for token_id, prob in zip(token_ids, token_probs, strict=True):
        if token_id == pad:
            break
        if token_id in (sep, eos):
            close_segment(float(prob))
            segment_ids, segment_probs = [], []
            if token_id == eos:
                break
            continue
        segment_ids.append(int(token_id))
        segment_probs.append(float(prob))
    else:
        # Ran out of new tokens mid-field: keep what was written, but no closing probability.
        if segment_ids:
            close_segment(0.0)

    for name in fields:
        answers.setdefault(name, FieldAnswer(name, "", 0.0, []))
    return {name: answers[name] for name in fields}


class PieceTrie:
    """The tokenizer's pieces as text ("▁" read as the space it stands for), in a character trie,
    to find every piece that reads at a given place of a text in one walk."""

    def __init__(self, pieces: Mapping[str, int]):
        self.root: dict = {}
        for piece, token_id in pieces.items():
            node = self.root
            for char in piece:
                node = node.setdefault(char, {})
            node.setdefault(None, []).append(token_id)  # the key None holds the ids ending here

    def matches(self, text: str, at: int) -> Iterator[tuple[int, int]]:
        """(token id, end) of every piece that `text` reads from `at`."""
        node, position = self.root, at
        while True:
            for token_id in node.get(None, ()):
                yield token_id, position
            if position == len(text) or text[position] not in node:
                return
            node, position = node[text[position]], position + 1


@dataclass
class _Pieces:
    continuing: PieceTrie  # every piece: "▁" continues after a space
    opening: PieceTrie  # pieces that begin a word, without their "▁": a value may start anywhere
    inner: PieceTrie  # pieces that do not begin a word (after a lone "▁" opened the value)
    lone_word_start: int | None
    unknown: int | None


@lru_cache(maxsize=8)
def _pieces(tokenizer: PreTrainedTokenizerBase) -> _Pieces:
    vocab = {
        piece: token_id
        for piece, token_id in tokenizer.get_vocab().items()
        if token_id not in tokenizer.all_special_ids
    }
    return _Pieces(
        continuing=PieceTrie({piece.replace(WORD_START, " "): i for piece, i in vocab.items()}),
        opening=PieceTrie(
            {p[1:]: i for p, i in vocab.items() if p.startswith(WORD_START) and len(p) > 1}
        ),
        inner=PieceTrie({p: i for p, i in vocab.items() if WORD_START not in p}),
        lone_word_start=vocab.get(WORD_START),
        unknown=tokenizer.unk_token_id,
    )


@dataclass(frozen=True)
class _ValueSpace:
    """The text a value is read from; with `starts` and `ends`, only whole spans of it."""

    text: str
    starts: frozenset[int] | None = None
    ends: frozenset[int] | None = None

    @classmethod
    def of(cls, page_text: str, spans: Sequence[str] | None) -> _ValueSpace:
        """Any substring of the page text (spans None), or one of `spans` exactly; "\0" between
        them, which no piece holds, so no value reads across two."""
        if spans is None:
            return cls(page_text)
        spans = [span for span in spans if "\0" not in span]  # across an unknown piece
        starts, ends, position = [], [], 0
        for span in spans:
            starts.append(position + 1)
            ends.append(position + 1 + len(span))
            position = ends[-1]
        text = "".join("\0" + span for span in spans)
        return cls(text, frozenset(starts), frozenset(ends))


class PageSpanConstraint:
    """Greedy decoding held to the answer format, every value read off the page.

    Free decoding may write any token, and a small model does: dates assembled from pieces
    ("25-/2" for 18-11-18), addresses that wander between occurrences of a word, field names
    misspelt so the answer is lost. Key-value answers are text of the page, so decoding is
    constrained (as grammar-constrained decoding restricts the next token to what a grammar
    allows): per row,

    - each asked field's `name:` tokens are written in order, forced (the names are known);
    - then the value, whose text must stay a substring of the window's text (its OCR words,
      normalised as the tokenizer normalises them, one space between words). Text, not token
      ids: a value may start inside a word ("12-01-19" of "Date:12-01-19", "9.00" of "RM9.00")
      and the tokenizer splits a value written alone differently from the same letters inside
      a longer word. A typed field's value (a date, an amount: `typed_spans`) must be one of
      the dates or amounts of that text, whole: a small model that finds the date line but not
      the date's exact extent would otherwise answer "HA7" or "18" of "26/02/18"; here it only
      chooses among the page's dates. An empty value says "absent";
    - then the separator, or `</s>` after the last field.

    The choice among allowed tokens is the model's (its highest probability), and the
    probability reported is its own renormalised over the allowed tokens: its preference among
    the answers the page holds, the question a confidence answers for a reader. A value cannot
    loop (it is a substring of a finite text), so the n-gram rule of free decoding is not
    needed. Same interface as `NoRepeatNGram`: `mask` before each choice, `add` after it.

    input_ids, copyable: the encoder rows (B, S) of the batch; `copyable` marks the OCR
    positions (attended, token type 0).
    """

    conditional_confidence = True

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        fields: Sequence[str],
        input_ids: torch.LongTensor,
        copyable: torch.Tensor,
    ):
        if not fields:
            raise ValueError("at least one field must be asked for")
        self.names = [
            tokenizer(f"{name}:", add_special_tokens=False)["input_ids"] for name in fields
        ]
        sep, eos = separator_id(tokenizer), tokenizer.eos_token_id
        self.closers = [sep] * (len(fields) - 1) + [eos]
        self.fields = list(fields)
        self.pieces = _pieces(tokenizer)
        self.texts = [
            self._page_text(tokenizer, row[mask].tolist())
            for row, mask in zip(input_ids.cpu(), copyable.bool().cpu(), strict=True)
        ]
        self._spaces: dict[tuple[int, int], _ValueSpace] = {}
        batch = input_ids.size(0)
        self.field = [0] * batch  # index of the field being written
        self.name_position = [0] * batch  # tokens of its `name:` written so far
        # Where the value written so far ends in the page text, at each place it reads there;
        # None before its first token, "lone" after a lone "▁" (the next piece opens it).
        self.ends: list[set[int] | str | None] = [None] * batch
        self._openings: dict[tuple[_ValueSpace, bool], dict[int, set[int]]] = {}
        # The choices `mask` found for each row in a value, for `add` to advance by.
        self._offered: dict[int, Mapping[int, set[int] | str]] = {}

    @classmethod
    def for_batch(
        cls,
        tokenizer: PreTrainedTokenizerBase,
        fields: Sequence[str],
        batch: Mapping[str, torch.Tensor],
    ) -> PageSpanConstraint:
        """The constraint for a processor batch (its input_ids, attention_mask and
        token_type_ids): the OCR positions are the attended ones of token type 0."""
        copyable = batch["attention_mask"].bool() & (batch["token_type_ids"] == 0)
        return cls(tokenizer, fields, batch["input_ids"], copyable)

    def _page_text(self, tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
        # An unknown piece becomes a character no piece holds: no value reads across it.
        pieces = ["\0" if i == self.pieces.unknown else p for i, p in
                  zip(ids, tokenizer.convert_ids_to_tokens(ids), strict=True)]  # fmt: skip
        return "".join(pieces).replace(WORD_START, " ")

    def _in_value(self, row: int) -> bool:
        index = self.field[row]
        return index < len(self.names) and self.name_position[row] == len(self.names[index])

    def _space(self, row: int) -> _ValueSpace:
        """Where the value of the row's current field may be read."""
        key = (row, self.field[row])
        if key not in self._spaces:
            spans = typed_spans(self.fields[self.field[row]], self.texts[row])
            self._spaces[key] = _ValueSpace.of(self.texts[row], spans)
        return self._spaces[key]

    def _opening(self, space: _ValueSpace, lone: bool) -> dict[int, set[int]]:
        """Token -> ends of every first piece a value can open with (after a lone "▁": its
        second piece); kept, as every untyped field of a row reads the same space."""
        key = (space, lone)
        if key not in self._openings:
            trie = self.pieces.inner if lone else self.pieces.opening
            starts = range(len(space.text)) if space.starts is None else space.starts
            opening: dict[int, set[int]] = {}
            for at in starts:
                for token_id, end in trie.matches(space.text, at):
                    opening.setdefault(token_id, set()).add(end)
            self._openings[key] = opening
        return self._openings[key]

    def _continuing(self, space: _ValueSpace, ends: set[int]) -> dict[int, set[int]]:
        following: dict[int, set[int]] = {}
        for at in ends:
            for token_id, end in self.pieces.continuing.matches(space.text, at):
                if end > at:
                    following.setdefault(token_id, set()).add(end)
        return following

    def _choices(self, row: int) -> Mapping[int, set[int] | str]:
        """Every token the value may go on with, and the state it leads to (read only: the
        openings are shared)."""
        ends, space = self.ends[row], self._space(row)
        if ends is None:
            choices: dict[int, set[int] | str] = dict(self._opening(space, lone=False))
            if self.pieces.lone_word_start is not None and self._opening(space, lone=True):
                choices[self.pieces.lone_word_start] = "lone"
            return choices
        if ends == "lone":
            return self._opening(space, lone=True)
        return self._continuing(space, ends)

    def _may_close(self, row: int) -> bool:
        """An untyped value may stop anywhere; a typed one only empty or at a span's end."""
        ends, space = self.ends[row], self._space(row)
        if space.ends is None or ends is None:
            return True
        return isinstance(ends, set) and not ends.isdisjoint(space.ends)

    def allowed_tokens(self, vocab_size: int) -> torch.Tensor:
        """(B, V) bool: the tokens the format and the page allow next, row by row."""
        allowed = torch.zeros(len(self.field), vocab_size, dtype=torch.bool)
        for row, index in enumerate(self.field):
            if index >= len(self.names):
                allowed[row, self.closers[-1]] = True  # finished: decoding pads it from here
            elif not self._in_value(row):
                allowed[row, self.names[index][self.name_position[row]]] = True
            else:
                self._offered[row] = choices = self._choices(row)
                # A span the pieces cannot finish (rare: a character only a longer piece holds)
                # ends where it is rather than leave the row without a token.
                allowed[row, self.closers[index]] = self._may_close(row) or not choices
                allowed[row, list(choices)] = True
        return allowed

    def mask(self, probs: torch.Tensor) -> torch.Tensor:
        """`probs` (B, V) with every token the format or the page rules out set to -1."""
        allowed = self.allowed_tokens(probs.size(-1))
        return probs.masked_fill(~allowed.to(probs.device), -1.0)

    def add(self, tokens: torch.Tensor) -> None:
        """Advances every row past the token just chosen for it."""
        for row, token in enumerate(tokens.tolist()):
            self._advance(row, token, self._offered.pop(row, None))

    def _advance(self, row: int, token: int, offered: Mapping[int, set[int] | str] | None) -> None:
        index = self.field[row]
        if index >= len(self.names):
            return
        if not self._in_value(row):
            self.name_position[row] += 1
            self.ends[row] = None
        elif token == self.closers[index]:
            self.field[row], self.name_position[row] = index + 1, 0
        else:
            self.ends[row] = (offered or self._choices(row))[token]

    def allowed_along(self, labels: torch.LongTensor, vocab_size: int) -> torch.Tensor:
        """(B, L, V) bool: at each position of the target `labels` (B, L; -100 ignored), the
        tokens decoding under this constraint could choose there, had it written the labels so
        far: what fine-tuning normalises over, so it trains the choice extraction makes.

        A labelled value that is not text of the window (the OCR misread it, or the window
        does not show it) cannot be followed: from the token that leaves the page to the end of
        that field every token is allowed (the plain objective), and the next field is held to
        the page again."""
        batch, length = labels.shape
        allowed = torch.ones(batch, length, vocab_size, dtype=torch.bool)
        off_page = [False] * batch
        for position in range(length):
            step = self.allowed_tokens(vocab_size)
            for row, token in enumerate(labels[:, position].tolist()):
                offered = self._offered.pop(row, None)
                if token < 0 or self.field[row] >= len(self.names):
                    continue
                if off_page[row]:
                    if self._in_value(row) and token == self.closers[self.field[row]]:
                        off_page[row] = False
                        self._advance(row, token, None)
                elif step[row, token]:
                    allowed[row, position] = step[row]
                    self._advance(row, token, offered)
                else:
                    off_page[row] = True
        return allowed


__all__ = [
    "DEFAULT_FIELDS",
    "FIELD_SEPARATOR",
    "FieldAnswer",
    "PageSpanConstraint",
    "build_prompt",
    "build_target",
    "parse_generation",
    "separator_id",
]
