"""Field values as printed -> typed values: dates, amounts with their currency.

The model answers with the text as printed ("25/12/2018", "RM 9.00"); SQL wants a date and a
number ("WHERE value_num > 100"). Every function here takes that raw text and returns a typed
value, or None when the text does not hold one. None of them raises on garbage: a value that
cannot be normalised is still stored as raw text.

Dates are parsed with python-dateutil (fuzzy, so "Date: 25/12/2018 10:32" works) and accepted
only when the text names a day, a month and a year: the text is parsed twice against two
different default dates, and a component that changes with the default was not in the text.
Ambiguous numeric dates (05/06/2018) are read day-first unless told otherwise: the documents
this project targets (Malaysian and other Commonwealth receipts, European invoices) print
dd/mm far more often than mm/dd; US documents need `day_first=False`. A first part that cannot
be a month (25/12/2018 with day_first=False, 12/25/2018 day-first) is read the only way that
works. Year-first dates (2018-05-06) are always year-month-day.

Amounts are found by price-parser (thousands and decimal separators of either convention:
"1,234.56", "1.234,56", "1 234.56", "9,00"); the sign (leading or trailing minus, accounting
parentheses) and the ISO 4217 currency are read here.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

from dateutil import parser as date_parser
from price_parser import Price

# --- currencies -------------------------------------------------------------------------------

# Active ISO 4217 codes.
_ISO_CODES = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD
    TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL"""
ISO_CURRENCIES = frozenset(_ISO_CODES.split())
# Codes that are also everyday upper-case words on a receipt ("ALL ITEMS", "TOP UP"): inside an
# amount's text they are not taken for a currency; a `currency` field may still name them.
CODES_THAT_ARE_WORDS = frozenset(
    {"ALL", "BAM", "CUP", "GEL", "MAD", "MOP", "PEN", "SOS", "TOP", "TRY"}
)

# Printed marks -> ISO code, compared upper-cased. A bare "$" is the US dollar and "¥" the yen,
# unless a code in the same text says otherwise ("SGD $12.00"). Marks shared by several
# currencies with no usual default ("kr": SEK, NOK, DKK, ISK) are left out on purpose.
CURRENCY_MARKS: dict[str, str] = {
    "$": "USD", "US$": "USD", "U$S": "USD", "USD$": "USD",
    "S$": "SGD", "SG$": "SGD", "A$": "AUD", "AU$": "AUD", "C$": "CAD", "CA$": "CAD",
    "HK$": "HKD", "NZ$": "NZD", "NT$": "TWD", "R$": "BRL", "MX$": "MXN",
    "RM": "MYR", "€": "EUR", "£": "GBP", "¥": "JPY", "円": "JPY", "RMB": "CNY", "元": "CNY",
    "₹": "INR", "RS": "INR", "RS.": "INR", "₩": "KRW", "฿": "THB", "₱": "PHP", "RP": "IDR",
    "₫": "VND", "₺": "TRY", "₽": "RUB", "ZŁ": "PLN", "₪": "ILS", "₦": "NGN", "KČ": "CZK",
    "FT": "HUF", "LEI": "RON", "DH": "MAD",
}  # fmt: skip
# Longest first, so "HK$" wins over "$" and "RS." over "RS".
_MARKS_BY_LENGTH = sorted(CURRENCY_MARKS, key=len, reverse=True)
_CODE_PATTERN = re.compile(r"(?<![A-Za-z])([A-Z]{3})(?![A-Za-z])")


def normalize_currency(text: str | None) -> str | None:
    """A currency as printed ("RM", "usd", "€", "S$") -> its ISO 4217 code, or None."""
    if not text or not isinstance(text, str):
        return None
    # "MYR (Ringgit)", "Currency: EUR": else the first code or mark inside.
    return _currency_named_by(text) or _currency_in(text)


def _currency_named_by(text: str) -> str | None:
    """The currency the whole text is ("RM", "usd", "EUR:"), or None."""
    cleaned = " ".join(text.split()).strip(" :.,;").upper()
    return cleaned if cleaned in ISO_CURRENCIES else CURRENCY_MARKS.get(cleaned)


def _currency_in(text: str) -> str | None:
    """The currency an amount's text names: a code wins over a mark ("SGD $12" is SGD)."""
    for code in _CODE_PATTERN.findall(text):
        if code in ISO_CURRENCIES and code not in CODES_THAT_ARE_WORDS:
            return code
    upper = text.upper()
    for mark in _MARKS_BY_LENGTH:
        # Marks that begin or end with a letter ("RM", "RS.", "HK$") count only as whole words,
        # never inside "FIRM", "HOURS." or "RPM".
        before = r"(?<![A-Z])" if mark[0].isalpha() else ""
        after = r"(?![A-Z])" if mark[-1].isalpha() else ""
        if re.search(before + re.escape(mark) + after, upper):
            return CURRENCY_MARKS[mark]
    return None


# --- amounts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Amount:
    value: Decimal
    currency: str | None  # ISO 4217 code


_MINUS = "-−–"  # hyphen-minus, minus sign, en dash (OCR reads all three)


def normalize_amount(text: str | None) -> Amount | None:
    """Amount and currency of a printed value: "RM 9.00" -> Amount(Decimal("9.00"), "MYR").

    "(12.50)", "12.50-" and "-12.50" are negative.

    The first number in the text is the amount ("Total: 9.00" -> 9.00). None when there is no
    number at all.
    """
    if not text or not isinstance(text, str):
        return None
    try:
        price = Price.fromstring(text)
    except (ValueError, ArithmeticError):
        return None
    if price.amount is None or price.amount_text is None:
        return None
    value = price.amount
    if not value.is_finite():
        return None
    start = text.find(price.amount_text)
    if start >= 0:
        before, after = text[:start], text[start + len(price.amount_text) :]
        if price.currency:
            before = before.replace(price.currency, "")
        negative = (
            bool(re.search(rf"[{_MINUS}]\s*$", before))
            or bool(re.match(rf"\s*[{_MINUS}]", after))
            or (bool(re.search(r"\(\s*$", before)) and bool(re.match(r"\s*\)", after)))
        )
        if negative:
            value = -value
    # price-parser's own currency guess also matches inside words ("RM" in "FIRM"); ours does not.
    return Amount(value, _currency_in(text))


# --- dates ------------------------------------------------------------------------------------


class _ParserInfo(date_parser.parserinfo):
    """dateutil's English month names plus the German and French ones our documents print
    ("25. Dezember 2018", "3 févr. 2019")."""

    MONTHS = [
        ("Jan", "January", "Januar", "Jän", "janv", "janvier"),
        ("Feb", "February", "Februar", "févr", "fevr", "février", "fevrier"),
        ("Mar", "March", "März", "Mär", "Maerz", "mars"),
        ("Apr", "April", "avr", "avril"),
        ("May", "Mai"),
        ("Jun", "June", "Juni", "juin"),
        ("Jul", "July", "Juli", "juil", "juillet"),
        ("Aug", "August", "août", "aout"),
        ("Sep", "Sept", "September", "septembre"),
        ("Oct", "October", "Okt", "Oktober", "octobre"),
        ("Nov", "November", "novembre"),
        ("Dec", "December", "Dez", "Dezember", "déc", "dec", "décembre", "decembre"),
    ]


_PARSER_INFO = _ParserInfo()
# Two defaults that differ in every component: whatever the text does not name differs too.
_DEFAULTS = (dt.datetime(1901, 1, 1), dt.datetime(1902, 2, 2))
_YEAR_FIRST = re.compile(r"(?<!\d)(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?!\d)")
_COMPACT = re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})(?!\d)")  # 20181225
_YEARS = range(1900, 2101)


def normalize_date(text: str | None, *, day_first: bool | None = None) -> dt.date | None:
    """A date as printed -> `datetime.date`, or None when the text holds no complete date.

    `day_first`: how to read an ambiguous numeric date like 05/06/2018; None (the default)
    means day-first, see the module docstring for why.
    """
    if not text or not isinstance(text, str) or not any(c.isdigit() for c in text):
        return None
    text = " ".join(text.split())[:200]
    # Year first is never ambiguous, but dateutil's dayfirst would read 2018-05-06 as 5 June.
    for pattern in (_YEAR_FIRST, _COMPACT):
        match = pattern.search(text)
        if match:
            return _date_or_none(*(int(g) for g in match.groups()))
    day_first = True if day_first is None else day_first
    try:
        first, second = (
            date_parser.parse(
                text,
                parserinfo=_PARSER_INFO,
                dayfirst=day_first,
                fuzzy=True,
                default=default,
                ignoretz=True,  # fuzzy parsing takes "RM" or "QTY" for a time zone; a date has none
            ).date()
            for default in _DEFAULTS
        )
    except (ValueError, OverflowError, TypeError, date_parser.ParserError):
        return None
    if first != second or first.year not in _YEARS:
        return None  # a day, month or year was missing from the text
    return first


def _date_or_none(year: int, month: int, day: int) -> dt.date | None:
    try:
        date = dt.date(year, month, day)
    except ValueError:
        return None
    return date if date.year in _YEARS else None


# --- fields -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormalizedValue:
    value_num: Decimal | None = None
    value_date: dt.date | None = None
    currency: str | None = None


AMOUNT_FIELDS = frozenset({"total", "tax", "subtotal", "amount", "price", "rounding", "discount"})


def is_date_field(name: str) -> bool:
    return "date" in name.lower()


def is_amount_field(name: str) -> bool:
    name = name.lower()
    return name in AMOUNT_FIELDS or name.endswith(("_amount", "_total", "_tax", "_price"))


def normalize_field(
    name: str, raw: str | None, *, day_first: bool | None = None
) -> NormalizedValue:
    """Typed forms of one field's raw value, chosen by the field's name: date-like names
    ("date", "due_date") -> value_date; amount-like (total, tax, subtotal, amount, price,
    "*_amount") -> value_num and currency; "currency" -> its ISO code; others -> nothing."""
    try:
        if is_date_field(name):
            return NormalizedValue(value_date=normalize_date(raw, day_first=day_first))
        if is_amount_field(name):
            amount = normalize_amount(raw)
            if amount is None:
                return NormalizedValue()
            return NormalizedValue(value_num=amount.value, currency=amount.currency)
        if name.lower() == "currency":
            return NormalizedValue(currency=normalize_currency(raw))
    except Exception:  # noqa: BLE001 - a value that cannot be normalised stays raw text
        return NormalizedValue()
    return NormalizedValue()


# --- spans ------------------------------------------------------------------------------------

# A printed date is at most four words ("Dec. 25, 2018", "25 Dezember 2018 10:32" less its time).
_DATE_WORDS = 4
# A value glued to its label ("Date:12-01-19", "Total=9.00", "No#1024") starts inside the word.
_GLUED_START = re.compile(r"(?<!\d)[:：=#]+(?=\S)")  # not a time's "18:35"
# Punctuation printed after a value ("25/12/2018,", "(9.00)") is not part of it.
_TRAILING = ",;:)."
_NUMBER = r"(?:\d{1,3}(?:[,.' ]\d{3})+|\d+)(?:[.,]\d{1,2})?"
_AMOUNT_NUMBER = re.compile(rf"[{_MINUS}]?{_NUMBER}[{_MINUS}]?|\({_NUMBER}\)")
# A bare integer ("4", "2018", "9514") is a quantity, a year or a phone number far more often
# than an amount: without its currency an amount must show cents or thousands.
_PLAIN_INTEGER = re.compile(rf"[{_MINUS}(]?\d+\)?[{_MINUS}]?")


def _is_amount_word(word: str) -> bool:
    """ "9.00", "RM9.00", "$6.90", "(12.50)", "1.234,56": a number, perhaps after its currency,
    and nothing else (not a phone number, a date or a code)."""
    digit = re.search(rf"[{_MINUS}(]?\d", word)
    if digit is None:
        return False
    prefix, number = word[: digit.start()], word[digit.start() :]
    if prefix and _currency_named_by(prefix) is None:
        return False
    return bool(_AMOUNT_NUMBER.fullmatch(number)) and (
        bool(prefix) or not _PLAIN_INTEGER.fullmatch(number)
    )


# A numeric date inside a longer word: OCR glues it to the time printed after it
# ("03/02/201815:28", "2018/02/2213:34:14"), to a weekday ("14-01-2018(Sun)") or to a number before
# it ("001-2018/02/22"). Only with a four-digit year, which fixes where the date ends (a glued
# "12-01-1921:13" could be 1921 or 19) from 1990 to 2039; or eight digits as one date
# ("20180428/191204").
_RECENT_YEAR = r"(?:199\d|20[0-3]\d)"
_GLUED_DATES = (
    re.compile(rf"\d{{1,2}}([/.-])\d{{1,2}}\1{_RECENT_YEAR}"),
    re.compile(rf"{_RECENT_YEAR}([/.-])\d{{1,2}}\1\d{{1,2}}"),
)
_COMPACT_DATE = re.compile(r"(?<!\d)\d{8}(?!\d)")


def _is_compact_date(digits: str) -> bool:
    """Whether eight digits are a date as yyyymmdd or ddmmyyyy (a year from 1990 to 2039)."""
    for year, month, day in ((digits[:4], digits[4:6], digits[6:]),
                             (digits[4:], digits[2:4], digits[:2])):  # fmt: skip
        try:
            if 1990 <= int(year) < 2040 and dt.date(int(year), int(month), int(day)):
                return True
        except ValueError:
            continue
    return False


def _glued_dates(text: str) -> list[tuple[int, int]]:
    """(start, end) of every numeric date printed inside a longer word of `text`."""
    spans = [
        match.span()
        for pattern in _GLUED_DATES
        for match in pattern.finditer(text)
        if normalize_date(match.group()) is not None
    ]
    return spans + [m.span() for m in _COMPACT_DATE.finditer(text) if _is_compact_date(m.group())]


def _glued_amounts(text: str) -> list[str]:
    """Amounts with their currency glued to the label before them ("TotalRM21.85" ->
    "RM21.85"): a word's tail that is a whole amount word beginning with a currency."""
    found = []
    for word in text.split():
        for at in range(1, len(word)):
            tail = word[at:].rstrip(_TRAILING)
            if not tail[:1].isdigit() and word[at - 1] not in _MINUS and _is_amount_word(tail):
                found.append(tail)
                break
    return found


def _names_a_month(text: str) -> bool:
    """Whether a word of `text` is a month's name: a date of several words has one ("27 MAR
    2018"); a numeric date is one word ("27/03/2018"), and fuzzy parsing would otherwise read a
    date into "15.00 9 20" or "1 X 3.90"."""
    return any(_PARSER_INFO.month(word.strip(".,")) is not None for word in text.split())


def _spans(text: str, max_words: int) -> list[tuple[int, int, int]]:
    """(start, end, words) of every run of up to `max_words` whitespace-separated words of
    `text`, starting at a word or after a label glued to it, ending at a word's end or before
    its trailing punctuation."""
    words = list(re.finditer(r"\S+", text))
    starts = [
        [w.start()] + [m.end() for m in _GLUED_START.finditer(text, w.start(), w.end())]
        for w in words
    ]
    ends = [{w.end(), w.start() + len(w.group().rstrip(_TRAILING) or w.group())} for w in words]
    spans = []
    for first in range(len(words)):
        for last in range(first, min(first + max_words, len(words))):
            for start in starts[first]:
                spans.extend((start, end, last - first + 1) for end in ends[last] if end > start)
    return spans


def amount_digits(text: str) -> str | None:
    """The number of an amount as printed, without its currency ("RM9.00" -> "9.00"), or None
    when the text holds no amount."""
    found = _AMOUNT_NUMBER.search(text)
    return found.group(0) if found else None


def typed_spans(name: str, text: str) -> list[str] | None:
    """Every piece of `text` that can be the value of field `name` by its type, or None when
    the field has no type (any text can be its value).

    Dates: the smallest runs of words that hold a complete date ("12-01-19" of
    "Date:12-01-19 18:35", "27 MAR 2018"). Amounts: a number, alone or beside its currency
    ("RM 9.00", "9.00", "RM9.00"), never a phone number, a date or a postcode with letters.
    Extraction holds a typed field's answer to one of these, so a date field cannot answer
    "HOUR-HOUR" and a total cannot answer "1 Total".
    """
    if is_date_field(name):
        found = [
            (start, end)
            for start, end, count in _spans(text, _DATE_WORDS)
            if (count == 1 or _names_a_month(text[start:end]))
            and normalize_date(text[start:end]) is not None
        ] + _glued_dates(text)
        smallest = [
            (start, end)
            for start, end in found
            if not any(s >= start and e <= end and (s, e) != (start, end) for s, e in found)
        ]
        return list(dict.fromkeys(text[start:end] for start, end in smallest))
    if is_amount_field(name):
        spans = []
        for start, end, count in _spans(text, 2):
            words = text[start:end].split()
            if count == 1 and _is_amount_word(words[0]):
                spans.append(text[start:end])
            elif count == 2 and any(map(_currency_named_by, words)):
                number = words[1] if _currency_named_by(words[0]) else words[0]
                if _AMOUNT_NUMBER.fullmatch(number):  # "RM 9", "9 EUR": the currency says so
                    spans.append(text[start:end])
        return list(dict.fromkeys(spans + _glued_amounts(text)))
    return None


__all__ = [
    "AMOUNT_FIELDS",
    "CURRENCY_MARKS",
    "ISO_CURRENCIES",
    "Amount",
    "NormalizedValue",
    "is_amount_field",
    "is_date_field",
    "normalize_amount",
    "normalize_currency",
    "normalize_date",
    "normalize_field",
    "typed_spans",
]
