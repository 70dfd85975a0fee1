"""A business as a document prints it, in any region: its shop name, street address and phone
number. Malaysian addresses come from `malaysia.py`; the other regions take theirs from a seeded
Faker of their locale (`regions.faker_for`)."""

from __future__ import annotations

import random

from faker import Faker

from docformer.synth.malaysia import my_address
from docformer.synth.regions import Region

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
