"""Where a document comes from decides how it reads: currency, tax, date order, language, and what
shop names and addresses look like. Malaysia gets the most care because the receipts the shipped
model must read (SROIE) are Malaysian: "SDN BHD" companies with registration numbers, JALAN /
TAMAN addresses with 5-digit postcodes, GST at 6 %, totals rounded to 5 sen.

Faker has no Malay locale, so Malaysian names and addresses are composed here from word lists;
other regions take theirs from a seeded Faker of their locale.
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


# --- Malaysian names and addresses ----------------------------------------------------------

MY_SYLLABLES = [
    "AIK",
    "SOON",
    "HUAT",
    "HENG",
    "TEO",
    "YONG",
    "FATT",
    "KIM",
    "LEE",
    "TAN",
    "CHUAN",
    "SENG",
    "HOCK",
    "LEONG",
    "WAH",
    "KEAT",
    "MING",
    "JIN",
    "LIAN",
    "HUP",
    "GUAN",
    "CHOON",
    "YEE",
    "SIN",
    "THYE",
    "LOONG",
    "FOOK",
    "KWONG",
    "HIN",
    "BEE",
    "ZHENG",
    "HUI",
    "ONG",
    "CHEE",
    "POH",
    "SOON",
    "WEI",
    "XING",
    "LIM",
    "GOH",
    "NG",
    "KHOO",
    "CHIN",
]
MY_MALAY = [
    "MAJU",
    "JAYA",
    "MAKMUR",
    "SENTOSA",
    "BERJAYA",
    "CAHAYA",
    "SRI",
    "MUTIARA",
    "INDAH",
    "PERMATA",
    "SINAR",
    "BUMI",
    "BISTARI",
    "MEGAH",
    "SETIA",
    "MURNI",
    "GEMILANG",
    "DAMAI",
    "HARMONI",
    "PUTRA",
    "RIA",
    "ALAF",
]
MY_TRADES = [
    "HARDWARE",
    "TRADING",
    "ENTERPRISE",
    "MINI MARKET",
    "STATIONERY & BOOKS",
    "RESTAURANT",
    "BAKERY",
    "MACHINERY",
    "ELECTRICAL",
    "GIFT & HOME DECO",
    "PHARMACY",
    "MOTOR",
    "FOOD INDUSTRIES",
    "SUPERMARKET",
    "HARDWARE & ELECTRICAL",
    "BOOKSTORE",
    "AUTO PARTS",
    "CAFE",
    "KOPITIAM",
    "FRUITS",
    "PRINTING",
    "TRAVEL",
    "MEDICAL SUPPLIES",
    "ROASTED DELIGHTS",
    "GALLERY",
    "PETRO TRADING",
    "DEPARTMENTAL STORE",
    "HOLDINGS",
]
MY_PREFIXES = ["PERNIAGAAN", "RESTORAN", "KEDAI", "SYARIKAT", "PASARAYA", "KEDAI RUNCIT"]
MY_SUFFIXES = {
    "SDN BHD": 4,
    "SDN. BHD.": 2,
    "(M) SDN BHD": 1,
    "ENTERPRISE": 1.5,
    "TRADING": 1,
    "": 3,
    "PLT": 0.3,
}
MY_STREETS = [
    "SAGU",
    "DEDAP",
    "HARMONI",
    "PUTRA",
    "PERMAS",
    "BESAR",
    "KURAU",
    "MEWAH",
    "SETIA INDAH",
    "ASTANA",
    "KEBUDAYAAN",
    "PERDANA",
    "BUNGA RAYA",
    "MERDEKA",
    "AMPANG",
    "KLANG LAMA",
    "IPOH",
    "CHERAS",
    "PUCHONG",
    "TUN RAZAK",
    "SULTAN ISMAIL",
    "PENDIDIKAN",
    "MUTIARA EMAS",
    "TEBRAU",
    "SKUDAI",
    "KENANGA",
    "MELATI",
    "CEMPAKA",
    "MERANTI",
    "SERI ALAM",
    "GENTING KLANG",
    "SETIA GEMBILANG",
    "KPB",
    "PJU",
    "USJ",
    "SS",
]
MY_AREAS = [
    "TAMAN DAYA",
    "TAMAN JOHOR JAYA",
    "TAMAN SRI PUTRA",
    "TMN SRI MUDA",
    "BANDAR BARU PERMAS JAYA",
    "KAWASAN PERINDUSTRIAN BALAKONG",
    "TAMAN DESA HARMONI",
    "TAMAN SENTOSA",
    "BANDAR BUKIT RAJA",
    "DAMANSARA JAYA",
    "TAMAN MOLEK",
    "BANDAR SETIA ALAM",
    "TAMAN UNIVERSITI",
    "TAMAN PELANGI",
    "TAMAN MOUNT AUSTIN",
    "BANDAR SUNWAY",
    "TAMAN CONNAUGHT",
    "TAMAN MELAWATI",
    "SEKSYEN 13",
    "PUSAT BANDAR",
]
MY_CITIES = [
    ("81100", "JOHOR BAHRU", "JOHOR"),
    ("80000", "JOHOR BAHRU", "JOHOR"),
    ("81300", "SKUDAI", "JOHOR"),
    ("81200", "JOHOR BAHRU", "JOHOR"),
    ("81620", "PENGERANG", "JOHOR"),
    ("43300", "SERI KEMBANGAN", "SELANGOR"),
    ("40170", "SHAH ALAM", "SELANGOR"),
    ("40400", "SHAH ALAM", "SELANGOR"),
    ("47400", "PETALING JAYA", "SELANGOR"),
    ("41050", "KLANG", "SELANGOR"),
    ("42200", "KAPAR", "SELANGOR"),
    ("43000", "KAJANG", "SELANGOR"),
    ("47100", "PUCHONG", "SELANGOR"),
    ("68000", "AMPANG", "SELANGOR"),
    ("45600", "BESTARI JAYA", "SELANGOR"),
    ("53300", "KUALA LUMPUR", "WILAYAH PERSEKUTUAN"),
    ("50450", "KUALA LUMPUR", "W.P. KUALA LUMPUR"),
    ("56000", "CHERAS", "KUALA LUMPUR"),
    ("10200", "GEORGE TOWN", "PULAU PINANG"),
    ("30450", "IPOH", "PERAK"),
    ("75200", "MELAKA", "MELAKA"),
    ("70200", "SEREMBAN", "NEGERI SEMBILAN"),
    ("88000", "KOTA KINABALU", "SABAH"),
]
MY_STATE_STYLES = {
    "SELANGOR": ["SELANGOR", "SELANGOR DARUL EHSAN", "SELANGOR D.E."],
    "JOHOR": ["JOHOR", "JOHOR DARUL TAKZIM"],
}


def my_company(rng: random.Random) -> str:
    style = rng.randrange(4)
    if style == 0:
        core = f"{rng.choice(MY_SYLLABLES)} {rng.choice(MY_SYLLABLES)} {rng.choice(MY_TRADES)}"
    elif style == 1:
        core = f"{rng.choice(MY_PREFIXES)} {rng.choice(MY_SYLLABLES)} {rng.choice(MY_SYLLABLES)}"
    elif style == 2:
        core = f"{rng.choice(MY_MALAY)} {rng.choice(MY_MALAY)} {rng.choice(MY_TRADES)}"
    else:
        core = f"{rng.choice(MY_SYLLABLES)}{rng.choice(MY_SYLLABLES)} {rng.choice(MY_TRADES)}"
    if rng.random() < 0.15:
        core += f" ({rng.choice(MY_AREAS).split()[-1]})"
    suffix = weighted(rng, MY_SUFFIXES)
    if suffix in core:
        suffix = ""
    return f"{core} {suffix}".strip()


def my_address(rng: random.Random) -> list[str]:
    """Two to four printed lines, e.g. ["NO.53, JALAN SAGU 18,", "TAMAN DAYA,", "81100 JOHOR BAHRU, JOHOR."]."""
    unit = weighted(
        rng, {"NO. {n}": 3, "NO.{n}": 2, "NO {n}": 1, "LOT {n}": 1, "{n}": 1.5, "NO: {n}": 0.3}
    )
    number = rng.choice(
        [
            str(rng.randrange(1, 200)),
            f"{rng.randrange(1, 90)}-{rng.choice('123G')}",
            f"{rng.randrange(2, 60, 2)}&{rng.randrange(2, 60, 2)}",
            f"{rng.randrange(1, 30)}-{rng.randrange(1, 12)}-{rng.randrange(1, 9)}",
            f"{rng.randrange(100, 3000)}-{rng.choice('AB')}",
        ]
    )
    road = rng.choice(["JALAN", "JALAN", "JLN", "JALAN"])
    street = rng.choice(MY_STREETS)
    street_no = rng.choice(
        [
            "",
            f" {rng.randrange(1, 30)}",
            f" {rng.randrange(1, 30)}/{rng.randrange(1, 70)}",
            f" {rng.randrange(1, 9)}{rng.choice('ABC')}",
        ]
    )
    postcode, city, state = rng.choice(MY_CITIES)
    state = rng.choice(MY_STATE_STYLES.get(state, [state]))
    comma = "," if rng.random() < 0.7 else ""
    first = f"{unit.format(n=number)}{comma} {road} {street}{street_no}{comma}"
    lines = [first]
    if rng.random() < 0.75:
        lines.append(f"{rng.choice(MY_AREAS)}{comma}")
    city_line = f"{postcode} {city}{comma}"
    end = "." if rng.random() < 0.4 else ""
    if rng.random() < 0.5:
        lines.append(f"{city_line} {state}{end}")
    else:
        lines += [city_line, f"{state}{end}"]
    if rng.random() < 0.12:
        lines.append("MALAYSIA")
    if rng.random() < 0.3 and len(lines) > 2:
        lines = [lines[0] + " " + lines[1], *lines[2:]]  # long first line, as wide tills print it
    return lines


def my_registration(rng: random.Random) -> str:
    number = f"{rng.randrange(10000, 1300000)}-{rng.choice('ADHKMPTUVWX')}"
    if rng.random() < 0.3:
        number = f"{rng.randrange(2000, 2020)}{rng.randrange(10**7):07d}({number})"
    return rng.choice(
        ["({n})", "CO. REG: {n}", "Company Reg No. : {n}", "ROC NO: {n}", "{n}", "CO NO: {n}"]
    ).format(n=number)


def my_tax_id(rng: random.Random) -> str:
    gst = f"{rng.randrange(10**11):012d}"
    return rng.choice(
        ["GST ID: {g}", "GST REG NO: {g}", "GST No: {g}", "GST ID No: {g}", "SST ID: W10-{a}-{b}"]
    ).format(g=gst, a=f"{rng.randrange(10**4):04d}", b=f"{rng.randrange(10**8):08d}")


# --- everyone else ---------------------------------------------------------------------------

SHOP_TYPES = {
    "en": [
        "Market",
        "Grocery",
        "Cafe",
        "Hardware",
        "Pharmacy",
        "Books",
        "Deli",
        "Bakery",
        "Diner",
        "Wine & Spirits",
        "Electronics",
        "Outfitters",
        "Hardware Store",
        "Kitchen",
    ],
    "de": [
        "Markt",
        "Bäckerei",
        "Apotheke",
        "Getränke",
        "Baumarkt",
        "Café",
        "Metzgerei",
        "Buchhandlung",
    ],
    "fr": [
        "Boulangerie",
        "Épicerie",
        "Pharmacie",
        "Café",
        "Librairie",
        "Brasserie",
        "Quincaillerie",
    ],
}


def shop_name(rng: random.Random, fake: Faker, region: Region) -> str:
    shop = rng.choice(SHOP_TYPES[region.language])
    style = rng.randrange(4)
    if style == 0:
        return fake.company()
    if style == 1 and region.language == "en":
        return f"{fake.last_name()}'s {shop}"
    if style == 2:
        return f"{shop} {fake.last_name()}" if region.language != "en" else f"{fake.city()} {shop}"
    return f"{fake.last_name()} {shop}"


def street_address(rng: random.Random, fake: Faker, region: Region) -> list[str]:
    if region.code == "MY":
        return my_address(rng)
    lines = [line.strip() for line in fake.address().split("\n") if line.strip()]
    if region.code in {"US", "AU"} and rng.random() < 0.3:
        lines = [", ".join(lines)]  # "123 Main St, Springfield, IL 62704" on one line
    return lines


def phone(rng: random.Random, fake: Faker, region: Region) -> str:
    if region.code == "MY":
        return f"0{rng.choice(['3', '7', '4', '6'])}-{rng.randrange(10**6, 10**7)}"
    return fake.phone_number()
