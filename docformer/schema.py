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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import prod

from transformers import PreTrainedTokenizerBase

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


__all__ = [
    "DEFAULT_FIELDS",
    "FIELD_SEPARATOR",
    "FieldAnswer",
    "build_prompt",
    "build_target",
    "parse_generation",
    "separator_id",
]
