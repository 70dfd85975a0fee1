"""The written style of field values, learned from labels and applied to extracted values.

Labels follow conventions that the printed page does not: SROIE receipt labels are upper case
("22 MAR 18", "YHM AEON TEBRAU CITY") where the receipt prints "22 Mar 18", they use single
spaces, and some fields never end with a full stop whatever the page prints. An extractor that
answers the text as printed then loses exact-match points on values it read correctly. So the
style is learned from the labels when fine-tuning (`learn_value_styles`), kept in the model's
config (`styles_to_config` / `styles_from_config`, JSON-safe), and each extracted value is written
in its field's style (`apply_value_styles`), the printed text being kept beside it as the raw
value.

A style is learned only when the labels agree on it almost without exception (`min_share`) and
there are enough of them to tell (`min_labels`); otherwise the field keeps the text as printed.
A wrong style costs every value of a field, a missed one only the values that differ.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

AS_PRINTED = "as_printed"
CASES = ("upper", "lower", AS_PRINTED)
TRAILING_PERIODS = ("strip", AS_PRINTED)

DEFAULT_MIN_SHARE = 0.95
DEFAULT_MIN_LABELS = 20

_TRAILING_PERIODS = re.compile(r"[.\s]+\Z")


@dataclass(frozen=True)
class ValueStyle:
    """How a field's values are written.

    case: "upper", "lower", or "as_printed" (unchanged).
    collapse_spaces: runs of whitespace become one space and the ends are trimmed. Always safe:
        labels are compared whitespace-collapsed anyway.
    trailing_period: "strip" removes full stops ending the value (only at the end: "SDN. BHD."
        becomes "SDN. BHD"); "as_printed" keeps them.
    """

    case: str = AS_PRINTED
    collapse_spaces: bool = True
    trailing_period: str = AS_PRINTED

    def __post_init__(self) -> None:
        # Styles come from model configs on disk; a misspelt one must fail loudly rather than
        # silently write values as printed.
        if self.case not in CASES:
            raise ValueError(f"case must be one of {CASES}, not {self.case!r}")
        if self.trailing_period not in TRAILING_PERIODS:
            raise ValueError(
                f"trailing_period must be one of {TRAILING_PERIODS}, not {self.trailing_period!r}"
            )
        if not isinstance(self.collapse_spaces, bool):
            raise ValueError(f"collapse_spaces must be a bool, not {self.collapse_spaces!r}")

    def apply(self, text: str) -> str:
        """`text` written in this style: spaces, then a final full stop, then case."""
        if self.collapse_spaces:
            text = " ".join(text.split())
        if self.trailing_period == "strip" and text.rstrip().endswith("."):
            # Every final full stop and the spaces between them ("ETC. ." -> "ETC"); a value made
            # only of full stops is left alone, as an empty answer would hide that one was read.
            stripped = _TRAILING_PERIODS.sub("", text)
            if stripped:
                text = stripped
        if self.case == "upper":
            text = text.upper()
        elif self.case == "lower":
            text = text.lower()
        return text

    def is_identity(self) -> bool:
        """True when `apply` returns every text unchanged, whitespace included."""
        return (
            self.case == AS_PRINTED
            and not self.collapse_spaces
            and self.trailing_period == AS_PRINTED
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "collapse_spaces": self.collapse_spaces,
            "trailing_period": self.trailing_period,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValueStyle:
        """The style `to_dict` wrote. Missing keys take their defaults and unknown keys are
        ignored, so configs written by older or newer versions still load; a known key with a
        value outside its choices raises ValueError."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a value style is a mapping, not {type(data).__name__}")
        return cls(
            case=data.get("case", AS_PRINTED),
            collapse_spaces=data.get("collapse_spaces", True),
            trailing_period=data.get("trailing_period", AS_PRINTED),
        )


def learn_value_styles(
    labels: Mapping[str, Sequence[str]],
    min_share: float = DEFAULT_MIN_SHARE,
    min_labels: int = DEFAULT_MIN_LABELS,
) -> dict[str, ValueStyle]:
    """The style of each field's labels: {field: every labelled value of that field}.

    Empty and None labels are skipped (the field was absent). Rules, each leaving the text as
    printed unless the labels clearly agree:

    - case: only labels with a cased letter vote; a total such as "9.00" has no case to tell,
      so a field of digits only stays "as_printed". "upper" when at least `min_share` of the
      voting labels equal their upper-case form, "lower" likewise, else "as_printed"; fewer
      than `min_labels` voting labels are too few to decide and give "as_printed".
    - trailing_period: "strip" when at least `min_labels` labels are there and at least
      `min_share` of them do not end with ".". A field whose labels often end with one ("CO.")
      keeps it as printed. "strip" is also learned when no label ends with "." at all, as is
      usual; it changes only values that end with a period.
    - collapse_spaces: always on, labels being compared whitespace-collapsed anyway.
    """
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], not {min_share}")
    if min_labels < 1:
        raise ValueError(f"min_labels must be at least 1, not {min_labels}")
    return {name: _learn_style(values, min_share, min_labels) for name, values in labels.items()}


def _learn_style(values: Sequence[str], min_share: float, min_labels: int) -> ValueStyle:
    labels = [" ".join(str(v).split()) for v in values if v is not None]
    labels = [label for label in labels if label]
    return ValueStyle(
        case=_learn_case(labels, min_share, min_labels),
        collapse_spaces=True,
        trailing_period=_learn_trailing_period(labels, min_share, min_labels),
    )


def _learn_case(labels: Sequence[str], min_share: float, min_labels: int) -> str:
    # A label has a cased letter when changing its case changes it.
    voting = [label for label in labels if label.upper() != label.lower()]
    if len(voting) < min_labels:
        return AS_PRINTED
    if sum(label == label.upper() for label in voting) >= min_share * len(voting):
        return "upper"
    if sum(label == label.lower() for label in voting) >= min_share * len(voting):
        return "lower"
    return AS_PRINTED


def _learn_trailing_period(labels: Sequence[str], min_share: float, min_labels: int) -> str:
    if len(labels) < min_labels:
        return AS_PRINTED
    without_period = sum(not label.endswith(".") for label in labels)
    return "strip" if without_period >= min_share * len(labels) else AS_PRINTED


def apply_value_styles(
    values: Mapping[str, str], styles: Mapping[str, ValueStyle]
) -> dict[str, str]:
    """Each value written in its field's style; fields without a style are left as they are,
    so a model trained before styles were learned answers exactly as it did."""
    return {
        name: styles[name].apply(value) if name in styles else value
        for name, value in values.items()
    }


def styles_to_config(styles: Mapping[str, ValueStyle]) -> dict[str, dict[str, Any]]:
    """JSON-safe form of the styles, for a model's config."""
    return {name: style.to_dict() for name, style in styles.items()}


def styles_from_config(data: Mapping[str, Mapping[str, Any]] | None) -> dict[str, ValueStyle]:
    """The styles `styles_to_config` wrote; None (a config without styles) means none."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"value styles are a mapping of field to style, not {type(data).__name__}")
    return {str(name): ValueStyle.from_dict(style) for name, style in data.items()}


__all__ = [
    "ValueStyle",
    "apply_value_styles",
    "learn_value_styles",
    "styles_from_config",
    "styles_to_config",
]
