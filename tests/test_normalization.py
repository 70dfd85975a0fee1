"""Field normalisation: dates and amounts as real documents print them, ambiguity, garbage."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from docformer.normalization import (
    Amount,
    NormalizedValue,
    normalize_amount,
    normalize_currency,
    normalize_date,
    normalize_field,
    typed_spans,
)

XMAS = dt.date(2018, 12, 25)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("25/12/2018", XMAS),
        ("25-12-18", XMAS),
        ("2018-12-25", XMAS),
        ("12/25/2018", XMAS),  # 25 cannot be a month: month-first whatever the default
        ("25 Dec 2018", XMAS),
        ("Dec 25, 2018", XMAS),
        ("December 25, 2018", XMAS),
        ("25.12.2018", XMAS),
        ("25DEC2018", XMAS),
        ("25-DEC-18", XMAS),
        ("2018/12/25", XMAS),
        ("20181225", XMAS),
        ("Date: 25/12/2018 10:32", XMAS),
        ("25/12/2018 (Tue)", XMAS),
        ("Tue, 25 Dec 2018", XMAS),
        ("25. Dezember 2018", XMAS),
        ("25 déc. 2018", XMAS),
        ("2018年12月25日", XMAS),
        ("05/06/2018", dt.date(2018, 6, 5)),  # ambiguous: day-first by default
        ("1/2/19", dt.date(2019, 2, 1)),
        ("2018-05-06", dt.date(2018, 5, 6)),  # year-first is never read day-first
    ],
)
def test_dates(text, expected):
    assert normalize_date(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("05/06/2018", dt.date(2018, 5, 6)),
        ("12/25/2018", XMAS),
        ("25/12/2018", XMAS),  # 25 cannot be a month: day-first whatever the hint
        ("2018-05-06", dt.date(2018, 5, 6)),
    ],
)
def test_dates_month_first(text, expected):
    assert normalize_date(text, day_first=False) == expected


@pytest.mark.parametrize(
    "text",
    ["", None, "garbage", "12", "10:32", "TOTAL 9.00", "31/02/2018", "13/13/2018", "Dec 25", 42],
)
def test_not_dates(text):
    assert normalize_date(text) is None


@pytest.mark.parametrize(
    "text, value, currency",
    [
        ("RM 9.00", "9.00", "MYR"),
        ("RM9.00", "9.00", "MYR"),
        ("$1,234.56", "1234.56", "USD"),
        ("1.234,56 €", "1234.56", "EUR"),
        ("1 234,50 €", "1234.50", "EUR"),
        ("EUR 12", "12", "EUR"),
        ("12.50-", "-12.50", None),
        ("(12.50)", "-12.50", None),
        ("-RM 5.00", "-5.00", "MYR"),
        ("RM -5.00", "-5.00", "MYR"),
        ("£3", "3", "GBP"),
        ("USD 1 234.00", "1234.00", "USD"),
        ("9,00", "9.00", None),
        ("Total: 9.00", "9.00", None),
        ("S$ 12.30", "12.30", "SGD"),
        ("SGD $12.00", "12.00", "SGD"),  # a code says which dollar
        ("HK$ 10", "10", "HKD"),
        ("¥1200", "1200", "JPY"),
        ("Rs. 1,20,000.00", "120000.00", "INR"),
        ("₹ 500", "500", "INR"),
        ("9.00MYR", "9.00", "MYR"),
        ("FIRM 5", "5", None),  # "RM" inside a word is no currency
        ("ALL 5.00", "5.00", None),  # nor an ISO code that is an everyday word
    ],
)
def test_amounts(text, value, currency):
    assert normalize_amount(text) == Amount(Decimal(value), currency)


@pytest.mark.parametrize("text", ["", None, "garbage", "N/A", "-", "RM", 3.5])
def test_not_amounts(text):
    assert normalize_amount(text) is None


@pytest.mark.parametrize(
    "text, code",
    [("RM", "MYR"), ("usd", "USD"), ("€", "EUR"), ("S$", "SGD"), ("MYR (Ringgit)", "MYR")],
)
def test_currencies(text, code):
    assert normalize_currency(text) == code


@pytest.mark.parametrize("text", ["", None, "Ringgit", "kr", "xyz"])
def test_not_currencies(text):
    assert normalize_currency(text) is None


@pytest.mark.parametrize(
    "name, raw, expected",
    [
        ("date", "25/12/18", NormalizedValue(value_date=XMAS)),
        ("due_date", "2018-12-25", NormalizedValue(value_date=XMAS)),
        ("total", "RM 9.00", NormalizedValue(value_num=Decimal("9.00"), currency="MYR")),
        ("tax", "0.54", NormalizedValue(value_num=Decimal("0.54"))),
        ("subtotal", "1.234,56 €", NormalizedValue(value_num=Decimal("1234.56"), currency="EUR")),
        ("line_amount", "(3.00)", NormalizedValue(value_num=Decimal("-3.00"))),
        ("currency", "rm", NormalizedValue(currency="MYR")),
        ("company", "ACME 25/12/2018 9.00", NormalizedValue()),
        ("invoice_number", "12345", NormalizedValue()),
        ("date", "garbage", NormalizedValue()),
        ("total", "garbage", NormalizedValue()),
        ("total", None, NormalizedValue()),
    ],
)
def test_normalize_field(name, raw, expected):
    assert normalize_field(name, raw) == expected


@pytest.mark.parametrize(
    "name, text, expected",
    [
        # the date glued to its label, not the time after it nor the phone number
        ("date", "Date:12-01-19 18:35 Tel:03-8051 9514", ["12-01-19"]),
        ("date", "DATE 27 MAR 2018, TOTAL RM 33.90", ["27 MAR 2018"]),
        ("date", "Invoice date: March 27, 2018 Due 2018-04-26", ["March 27, 2018", "2018-04-26"]),
        ("due_date", "Fällig am 25. Dezember 2018.", ["25. Dezember 2018"]),
        ("date", "15.00 9 20 1 X 3.90", []),  # numbers that fuzzy parsing would read as a date
        # glued by the OCR to the time, a weekday or a number; eight digits; not a phone number
        ("date", "Date 03/02/201815:28 Cashier", ["03/02/2018"]),
        ("date", "Take Out Date:2018/02/2213:34:14 001-2018/02/22", ["2018/02/22"]),
        ("date", "14-01-2018（Sun） 16:02 Time 20180428/191204", ["14-01-2018", "20180428"]),
        ("date", "Tel 0123456789 Reg 12345678", []),
        # with or without its currency; not a quantity, a phone number or a postcode
        ("total", "TOTAL RM 33.90 Cash: RM50.00 Qty 4 Tel 03-8051 9514", ["RM 33.90", "33.90", "RM50.00"]),
        ("total", "Total(RM): 1,234.50 Rounding (0.02) 9,00 EUR", ["1,234.50", "(0.02)", "9,00", "9,00 EUR"]),
        ("tax", "GST 6% 0.54 SST=$1.20 2018 81100", ["0.54", "$1.20"]),
        ("total", "Grand TotalRM21.85 Tota1RM14.20 Change 5", ["RM21.85", "RM14.20"]),  # glued
        ("company", "ACME 25/12/2018 9.00", None),  # untyped: any text
    ],
)  # fmt: skip
def test_typed_spans(name, text, expected):
    assert typed_spans(name, text) == expected
