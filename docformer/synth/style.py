"""One document's printing habits, decided once and then kept for the whole page: typeface, size,
case, how money and dates are printed. Real documents are consistent within themselves and vary
from one issuer to the next; drawing these once per document reproduces exactly that.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from faker import Faker

from docformer.synth.fonts import Typeface, typefaces
from docformer.synth.regions import (
    MoneyStyle,
    Region,
    alphabet,
    faker_for,
    format_date,
    format_number,
    pick_money_style,
    random_date,
    weighted,
)
from docformer.synth.vocabulary import label


@dataclass
class Style:
    rng: random.Random
    region: Region
    fake: Faker
    face: Typeface
    size: int  # body text size in pixels
    spacing: float  # line pitch as a multiple of the font height
    upper: bool  # everything printed in capitals (most Malaysian tills)
    money: MoneyStyle
    date_style: str
    date: dt.date
    fields: dict[str, str] = field(default_factory=dict)  # ground truth, filled while printing

    @classmethod
    def pick(
        cls,
        rng: random.Random,
        region: Region,
        face_weights: dict[str, float],
        size: tuple[int, int],
        upper_p: float,
    ) -> Style:
        face = rng.choice(typefaces(weighted(rng, face_weights), alphabet(region)))
        return cls(
            rng=rng,
            region=region,
            fake=faker_for(region, rng),
            face=face,
            size=rng.randint(*size),
            spacing=rng.uniform(1.15, 1.55),
            upper=rng.random() < upper_p,
            money=pick_money_style(rng, region),
            date_style=weighted(rng, region.date_styles),
            date=random_date(rng),
        )

    def font(self, scale: float = 1.0, bold: bool = False):
        return self.face.font(max(9, round(self.size * scale)), bold)

    def t(self, text: str) -> str:
        """Text as this document prints it (capitals or not), with whitespace normalised."""
        text = " ".join(text.split())
        return text.upper() if self.upper else text

    def label(self, key: str) -> str:
        return self.t(label(self.rng, self.region.language, key))

    def amount(self, cents: int, with_mark: bool = False) -> str:
        return self.money.format(cents, self.region, with_mark)

    def number(self, cents: int) -> str:
        """The bare number as printed: what `total` and `tax` hold."""
        return format_number(cents, self.region, self.money.thousands)

    def printed_date(self, day: dt.date | None = None) -> str:
        return format_date(
            day or self.date,
            self.date_style,
            self.region.language,
            upper=self.upper and "mon" in self.date_style,
        )

    def record(self, name: str, value: str) -> None:
        """Keep a field exactly as printed (whitespace collapsed, as words will be)."""
        self.fields[name] = " ".join(value.split())
