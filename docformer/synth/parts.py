"""Pieces many documents share: a logo, a block of lines, line items with their money, codes."""

from __future__ import annotations

import random
from dataclasses import dataclass

from docformer.synth.canvas import Canvas, Font
from docformer.synth.style import Style


@dataclass
class LineItem:
    description: str
    quantity: int
    unit_cents: int
    code: str = ""

    @property
    def amount_cents(self) -> int:
        return self.quantity * self.unit_cents


def line_items(
    style: Style, names: list[str], count: int, price_range: tuple[int, int]
) -> list[LineItem]:
    rng = style.rng
    items = []
    for name in rng.sample(names, min(count, len(names))):
        quantity = 1 if rng.random() < 0.6 else rng.randint(2, 12)
        low, high = price_range
        # Log-uniform: cheap items are common, expensive ones rare, all price magnitudes appear.
        cents = round(low * (high / low) ** rng.random())
        cents = cents - cents % 5 if rng.random() < 0.6 else cents
        code = (
            str(rng.randrange(10**12, 10**13))
            if rng.random() < 0.5
            else f"{rng.randrange(10**5, 10**7)}"
        )
        items.append(LineItem(style.t(name), quantity, max(5, cents), code))
    return items


def initials(name: str) -> str:
    letters = [w[0] for w in name.replace("&", " ").split() if w[:1].isalpha()]
    return "".join(letters[:3]).upper() or "X"


def logo(
    canvas: Canvas, style: Style, x: float, y: float, size: float, name: str, lettered: bool = True
) -> None:
    """A drawn mark: a circle, a box or a diamond around the issuer's initials, or bars. A logo
    beside text is never lettered, so its letters do not fall between the rows it stands by."""
    rng = style.rng
    shape = rng.randrange(4)
    shade = rng.choice([255, 255, 200, 150])
    if shape == 0:
        canvas.ellipse((x, y, x + size, y + size), width=max(2, round(size / 18)), shade=shade)
    elif shape == 1:
        canvas.rect((x, y, x + size, y + size), outline=max(2, round(size / 16)), shade=shade)
    elif shape == 2:
        half = size / 2
        canvas.polygon(
            [(x + half, y), (x + size, y + half), (x + half, y + size), (x, y + half)],
            shade=shade,
            width=max(2, round(size / 18)),
        )
    else:
        for i in range(3):
            bar = size / 7
            canvas.rect(
                (x + i * 2 * bar, y + size * (0.6 - 0.2 * i), x + i * 2 * bar + bar, y + size),
                outline=0,
                fill=shade,
            )
        return
    if not lettered:
        return
    text = initials(name)
    font = style.face.font(max(10, round(size / (1.6 + 0.6 * len(text)))), bold=True)
    ascent, descent = font.getmetrics()
    canvas.text(text, font, x + size / 2, y + size / 2 + (ascent - descent) / 2, "center", shade)


def print_lines(
    canvas: Canvas, lines: list[str], font: Font, x: float, align: str, width: float, spacing: float
) -> list[str]:
    """Print lines (wrapping the long ones) and return what was printed, one entry per row."""
    printed = []
    for line in lines:
        for row in canvas.wrap(line, font, width):
            canvas.row([(row, x, align)], font, spacing)
            printed.append(row)
    return printed


def barcode_bars(rng: random.Random, count: int = 40) -> list[int]:
    return [rng.choice([1, 1, 2, 3]) for _ in range(count * 2 + 1)]


def grid_cells(rng: random.Random, n: int = 21) -> list[list[bool]]:
    cells = [[rng.random() < 0.5 for _ in range(n)] for _ in range(n)]
    for r0, c0 in ((0, 0), (0, n - 7), (n - 7, 0)):  # the three finder squares of a QR code
        for r in range(7):
            for c in range(7):
                edge = r in (0, 6) or c in (0, 6)
                core = 2 <= r <= 4 and 2 <= c <= 4
                cells[r0 + r][c0 + c] = edge or core
    return cells


def document_number(rng: random.Random) -> str:
    pattern = rng.choice(
        [
            "{p}{n:08d}",
            "{n:02d}-{m:06d}",
            "{p} {n:05d}",
            "{p}-{y}-{n:04d}",
            "{n:06d}",
            "{p}{n:06d}",
            "{y}{m:06d}",
            "{n:010d}",
        ]
    )
    prefix = rng.choice(["CS", "INV", "TD", "R", "OR", "SI", "B", "IV", "CB", "T"])
    return pattern.format(
        p=prefix, n=rng.randrange(1, 10**5), m=rng.randrange(1, 10**6), y=rng.randrange(2014, 2026)
    )
