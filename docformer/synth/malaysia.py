"""Malaysian names and addresses, the way SROIE's receipts print them: "SDN BHD" companies
with registration numbers, JALAN / TAMAN addresses with 5-digit postcodes, GST and SST ids.
Faker has no Malay locale, so they are composed here from word lists (most of this file)."""

from __future__ import annotations

import random

from docformer.synth.regions import weighted

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
