"""What field extraction returns (`docformer.extraction.Extractor`): `ExtractedField`, one
field's value with its confidence, typed value, page and box, and `DocumentExtraction`, the
fields found in one document. `ExtractedField.to_record` is the shape the database layer stores;
`to_dict` is the JSON `docformer extract` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from docformer.document import Box


@dataclass
class ExtractedField:
    name: str
    value: str  # the answer as generated, whitespace collapsed
    confidence: float  # probability the model gives to exactly this answer
    value_num: Decimal | None = None
    value_date: date | None = None
    currency: str | None = None  # ISO 4217
    page: int | None = None  # index of the page the answer was grounded on
    box: Box | None = None  # union of its words' boxes, in that page's OCR pixels
    word_indices: list[int] = field(default_factory=list)  # into that page's `ocr.words`
    # The text as printed on the page, before the field's learned value style (upper case...)
    # was applied to `value`; None when the two are the same.
    raw_value: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The field as `db.extractions.ExtractionRecord.fields` takes it."""
        return {
            "name": self.name,
            "value": self.value,
            "raw_value": self.raw_value,
            "value_num": self.value_num,
            "value_date": self.value_date,
            "currency": self.currency,
            "confidence": self.confidence,
            "page": self.page,
            "box": list(self.box) if self.box is not None else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: Decimal as a string (no float rounding), date in ISO format."""
        return {
            "name": self.name,
            "value": self.value,
            "raw_value": self.raw_value if self.raw_value is not None else self.value,
            "confidence": round(self.confidence, 6),
            "value_num": str(self.value_num) if self.value_num is not None else None,
            "value_date": self.value_date.isoformat() if self.value_date is not None else None,
            "currency": self.currency,
            "page": self.page,
            "box": [round(v, 2) for v in self.box] if self.box is not None else None,
            "word_indices": list(self.word_indices),
        }


@dataclass
class DocumentExtraction:
    source: str
    sha256: str
    pages: int
    fields: dict[str, ExtractedField]  # only fields the model found; absent fields are left out
    model: str
    seconds: float  # this document's share of its batch's extraction time (by window count)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sha256": self.sha256,
            "pages": self.pages,
            "model": self.model,
            "seconds": round(self.seconds, 4),
            "fields": {name: f.to_dict() for name, f in self.fields.items()},
        }


__all__ = ["DocumentExtraction", "ExtractedField"]
