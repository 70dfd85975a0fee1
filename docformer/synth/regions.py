"""Where a document comes from decides how it reads: currency, tax, date order, language, and what
shop names and addresses look like. Malaysia gets the most care because the receipts the shipped
model must read (SROIE) are Malaysian: "SDN BHD" companies with registration numbers, JALAN /
TAMAN addresses with 5-digit postcodes, GST at 6 %, totals rounded to 5 sen.

This file holds the regions themselves (`Region`, `REGIONS`, how often each prints each kind)
and how each prints money and dates. The names and addresses are beside it: `malaysia.py`
composes Malaysian ones from word lists (Faker has no Malay locale), and `businesses.py` gives
any region's shop name, street address and phone number, from a seeded Faker of its locale
for the others.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from dataclasses import dataclass

from faker import Faker


@dataclass(frozen=True)
class Region:
    code: str
    faker_locale: str
    language: str  # "en", "de" or "fr": the labels printed
    currency_code: str
    currency_marks: tuple[str, ...]  # how the currency is printed beside amounts
    decimal_comma: bool
    tax_names: tuple[str, ...]
    tax_rates: tuple[float, ...]
    prices_include_tax: bool  # receipts show tax "included" rather than added
    cash_rounding: int  # totals paid in cash are rounded to this many cents (1 = none)
    date_styles: tuple[tuple[str, float], ...]  # (style, weight), styles understood by format_date


REGIONS: dict[str, Region] = {
    "MY": Region(
        "MY",
        "en_GB",
        "en",
        "MYR",
        ("RM",),
        False,
        ("GST", "SST", "GST", "Tax"),
        (6.0, 6.0, 0.0, 10.0),
        True,
        5,
        (
            ("dd/mm/yyyy", 5),
            ("dd-mm-yy", 1.5),
            ("dd-mm-yyyy", 1.2),
            ("dd/mm/yy", 1),
            ("dd mon yyyy", 0.8),
            ("d/m/yyyy", 0.2),
            ("dd-mon-yyyy", 0.2),
            ("yyyy-mm-dd", 0.2),
            ("dd mon yy", 0.2),
            ("mm/dd/yyyy", 0.1),
            ("yyyymmdd", 0.1),
            ("dd/mon/yyyy", 0.1),
        ),
    ),
    "US": Region(
        "US",
        "en_US",
        "en",
        "USD",
        ("$", "USD"),
        False,
        ("Sales Tax", "Tax", "TAX"),
        (6.0, 7.25, 8.875, 4.0),
        False,
        1,
        (
            ("mm/dd/yyyy", 4),
            ("mm/dd/yy", 2),
            ("mon d, yyyy", 1.5),
            ("month d, yyyy", 1),
            ("yyyy-mm-dd", 0.7),
            ("m/d/yyyy", 1),
        ),
    ),
    "GB": Region(
        "GB",
        "en_GB",
        "en",
        "GBP",
        ("£", "GBP"),
        False,
        ("VAT",),
        (20.0, 5.0),
        True,
        1,
        (
            ("dd/mm/yyyy", 4),
            ("d mon yyyy", 2),
            ("d month yyyy", 1),
            ("dd/mm/yy", 1),
            ("yyyy-mm-dd", 0.5),
            ("dd-mon-yyyy", 0.5),
        ),
    ),
    "AU": Region(
        "AU",
        "en_AU",
        "en",
        "AUD",
        ("$", "AUD"),
        False,
        ("GST",),
        (10.0,),
        True,
        5,
        (("dd/mm/yyyy", 4), ("dd/mm/yy", 1.5), ("d mon yyyy", 1), ("yyyy-mm-dd", 0.3)),
    ),
    "IN": Region(
        "IN",
        "en_IN",
        "en",
        "INR",
        ("Rs.", "INR", "₹"),
        False,
        ("GST", "CGST", "IGST"),
        (18.0, 12.0, 5.0),
        False,
        1,
        (("dd/mm/yyyy", 3), ("dd-mm-yyyy", 2), ("dd-mon-yyyy", 1), ("dd.mm.yyyy", 0.5)),
    ),
    "DE": Region(
        "DE",
        "de_DE",
        "de",
        "EUR",
        ("€", "EUR"),
        True,
        ("MwSt.", "USt.", "MwSt"),
        (19.0, 7.0),
        True,
        1,
        (("dd.mm.yyyy", 5), ("dd.mm.yy", 2), ("d. month yyyy", 1), ("yyyy-mm-dd", 0.5)),
    ),
    "FR": Region(
        "FR",
        "fr_FR",
        "fr",
        "EUR",
        ("€", "EUR"),
        True,
        ("TVA",),
        (20.0, 10.0, 5.5),
        True,
        1,
        (("dd/mm/yyyy", 5), ("d month yyyy", 1), ("dd/mm/yy", 1), ("dd.mm.yyyy", 0.2)),
    ),
}

# How often each region prints each kind. Receipts lean on Malaysia (the target), the rest spread.
REGION_WEIGHTS = {
    "receipt": {"MY": 6, "US": 1.2, "GB": 0.8, "AU": 0.6, "IN": 0.5, "DE": 0.5, "FR": 0.4},
    "default": {"MY": 2, "US": 2, "GB": 1.5, "AU": 0.7, "IN": 0.7, "DE": 1, "FR": 0.8},
}


# Characters each language and currency prints beyond ASCII: a face must have all of them.
ALPHABETS = {"de": "äöüÄÖÜßé€", "fr": "éèêëàâçôûùîïÉÈÀÇœ€°", "en": ""}


def alphabet(region: Region) -> str:
    return (
        ALPHABETS[region.language]
        + "".join(region.currency_marks)
        + ("é" if region.code in {"GB", "US", "AU"} else "")
    )


def pick_region(rng: random.Random, kind: str) -> Region:
    weights = REGION_WEIGHTS.get(kind, REGION_WEIGHTS["default"])
    return REGIONS[rng.choices(list(weights), list(weights.values()))[0]]


@functools.lru_cache(maxsize=16)
def _faker(locale: str) -> Faker:
    return Faker(locale)


def faker_for(region: Region, rng: random.Random) -> Faker:
    """A Faker of the region's locale, reseeded from rng so that a document is reproducible."""
    fake = _faker(region.faker_locale)
    fake.seed_instance(rng.getrandbits(64))
    return fake


def weighted(rng: random.Random, options: dict[str, float] | tuple[tuple[str, float], ...]):
    items = list(options.items()) if isinstance(options, dict) else list(options)
    return rng.choices([k for k, _ in items], [w for _, w in items])[0]


# --- money -----------------------------------------------------------------------------------


def format_number(cents: int, region: Region, thousands: bool = True) -> str:
    """12345 -> "123.45" (or "123,45"); thousands grouped as the region does when asked."""
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(cents), 100)
    whole = f"{units:,}" if thousands else str(units)
    if region.decimal_comma:
        whole = whole.replace(",", ".")
        return f"{sign}{whole},{rest:02d}"
    return f"{sign}{whole}.{rest:02d}"


@dataclass(frozen=True)
class MoneyStyle:
    """How one document prints amounts: the mark, where it goes, and thousands grouping."""

    mark: str  # "" for bare numbers
    place: str  # "prefix", "prefix-space", "suffix-space"
    thousands: bool

    def format(self, cents: int, region: Region, with_mark: bool = True) -> str:
        number = format_number(cents, region, self.thousands)
        if not self.mark or not with_mark:
            return number
        if self.place == "prefix":
            return f"{self.mark}{number}"
        if self.place == "prefix-space":
            return f"{self.mark} {number}"
        return f"{number} {self.mark}"


def pick_money_style(rng: random.Random, region: Region) -> MoneyStyle:
    mark = rng.choice(region.currency_marks)
    if region.decimal_comma:
        place = weighted(rng, {"suffix-space": 3, "prefix-space": 1})
    elif len(mark) == 1 or mark == "Rs.":
        place = weighted(rng, {"prefix": 4, "prefix-space": 1})
    else:
        place = weighted(
            rng, {"prefix-space": 3, "prefix": 1 if mark == "RM" else 0.01, "suffix-space": 0.5}
        )
    return MoneyStyle(mark, place, rng.random() < 0.7)


# --- dates -----------------------------------------------------------------------------------

MONTHS = {
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    "de": [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ],
    "fr": [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ],
}


def format_date(day: dt.date, style: str, language: str = "en", upper: bool = False) -> str:
    """Render a date in one of the styles named in REGIONS (e.g. "dd/mm/yyyy", "mon d, yyyy")."""
    month = MONTHS.get(language, MONTHS["en"])[day.month - 1]
    mon = (
        month[:3] if language == "en" else month[:4].rstrip(".") + "." if len(month) > 4 else month
    )
    if upper or (
        language == "en"
        and style.startswith(("dd mon", "dd-mon", "dd/mon"))
        and day.toordinal() % 2
    ):
        # Malaysian tills print "12 MAR 2018" as often as "12 Mar 2018".
        month, mon = month.upper(), mon.upper()
    tokens = {
        "yyyy": f"{day.year:04d}",
        "yy": f"{day.year % 100:02d}",
        "mm": f"{day.month:02d}",
        "dd": f"{day.day:02d}",
        "month": month,
        "mon": mon,
        "m": str(day.month),
        "d": str(day.day),
    }
    out, i = [], 0
    while i < len(style):
        for token in ("yyyy", "month", "mon", "yy", "mm", "dd", "m", "d"):
            if style.startswith(token, i):
                out.append(tokens[token])
                i += len(token)
                break
        else:
            out.append(style[i])
            i += 1
    return "".join(out)


def random_date(rng: random.Random) -> dt.date:
    return dt.date(2014, 1, 1) + dt.timedelta(days=rng.randrange(12 * 365))


def format_time(rng: random.Random) -> str:
    hour, minute, second = rng.randrange(7, 23), rng.randrange(60), rng.randrange(60)
    style = rng.randrange(4)
    if style == 0:
        return f"{hour:02d}:{minute:02d}"
    if style == 1:
        return f"{hour:02d}:{minute:02d}:{second:02d}"
    suffix = "PM" if hour >= 12 else "AM"
    h12 = hour % 12 or 12
    return (
        f"{h12}:{minute:02d} {suffix}"
        if style == 2
        else f"{h12}:{minute:02d}:{second:02d} {suffix}"
    )
