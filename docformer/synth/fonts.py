"""The typefaces the generator can print with: whatever exists on this machine, found the same way
every time so that a seed gives the same pages on the same machine.

Pillow's built-in Aileron (`ImageFont.load_default(size=...)`, Pillow >= 10.1) is always there.
Common Debian font packages are picked up when installed (fonts-dejavu-core ships with most
images; fonts-liberation, fonts-freefont-ttf, fonts-noto-mono, fonts-courier-prime,
fonts-crosextra-carlito and fonts-open-sans add variety). Only files named in `KNOWN_FACES` are
used, so a machine with extra fonts still renders known faces with known regular/bold pairs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))

# name -> (style, regular file, bold file). Style says where a face belongs: thermal receipts and
# dot-matrix printers print "mono", shops with laser printers and invoices print "sans"/"serif".
KNOWN_FACES: dict[str, tuple[str, str, str]] = {
    "DejaVu Sans": ("sans", "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    "DejaVu Sans Condensed": ("sans", "DejaVuSansCondensed.ttf", "DejaVuSansCondensed-Bold.ttf"),
    "DejaVu Serif": ("serif", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"),
    "DejaVu Serif Condensed": (
        "serif",
        "DejaVuSerifCondensed.ttf",
        "DejaVuSerifCondensed-Bold.ttf",
    ),
    "DejaVu Sans Mono": ("mono", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"),
    "Liberation Sans": ("sans", "LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf"),
    "Liberation Sans Narrow": (
        "sans",
        "LiberationSansNarrow-Regular.ttf",
        "LiberationSansNarrow-Bold.ttf",
    ),
    "Liberation Serif": ("serif", "LiberationSerif-Regular.ttf", "LiberationSerif-Bold.ttf"),
    "Liberation Mono": ("mono", "LiberationMono-Regular.ttf", "LiberationMono-Bold.ttf"),
    "FreeSans": ("sans", "FreeSans.ttf", "FreeSansBold.ttf"),
    "FreeSerif": ("serif", "FreeSerif.ttf", "FreeSerifBold.ttf"),
    "FreeMono": ("mono", "FreeMono.ttf", "FreeMonoBold.ttf"),
    "Noto Mono": ("mono", "NotoMono-Regular.ttf", "NotoMono-Regular.ttf"),
    "Noto Sans": ("sans", "NotoSans-Regular.ttf", "NotoSans-Bold.ttf"),
    "Noto Serif": ("serif", "NotoSerif-Regular.ttf", "NotoSerif-Bold.ttf"),
    "Courier Prime": ("mono", "CourierPrime-Regular.ttf", "CourierPrime-Bold.ttf"),
    "Carlito": ("sans", "Carlito-Regular.ttf", "Carlito-Bold.ttf"),
    "Open Sans": ("sans", "OpenSans-Regular.ttf", "OpenSans-Bold.ttf"),
}

BUILTIN_FACE = "Aileron (Pillow built-in)"


@dataclass(frozen=True)
class Typeface:
    name: str
    style: str  # "sans", "serif" or "mono"
    regular: Path | None  # None: Pillow's built-in Aileron
    bold: Path | None

    def font(self, size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
        return _load(self.bold if bold else self.regular, int(size))

    def covers(self, text: str) -> bool:
        """Whether every character of text has a glyph (not the "missing" box) in this face."""
        return all(
            _has_glyph(self.regular, ch) and _has_glyph(self.bold, ch)
            for ch in set(text)
            if not ch.isspace()
        )


@functools.lru_cache(maxsize=4096)
def _has_glyph(path: Path | None, char: str) -> bool:
    # A character without a glyph renders exactly like a code point no font has.
    font = _load(path, 24)
    return _render(font, char) != _render(font, "\U0010fffd")


def _render(font: ImageFont.FreeTypeFont, text: str) -> bytes:
    image = Image.new("L", (64, 48), 0)
    ImageDraw.Draw(image).text((8, 8), text, font=font, fill=255)
    return image.tobytes()


@functools.lru_cache(maxsize=512)
def _load(path: Path | None, size: int) -> ImageFont.FreeTypeFont:
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(path), size)


@functools.lru_cache(maxsize=1)
def available_typefaces() -> tuple[Typeface, ...]:
    """Every known face found on this machine, in a fixed order, plus the built-in one."""
    files: dict[str, Path] = {}
    for root in FONT_DIRS:
        if root.is_dir():
            for path in sorted(root.rglob("*.[ot]tf")):
                files.setdefault(path.name, path)
    faces = [Typeface(BUILTIN_FACE, "sans", None, None)]
    for name, (style, regular, bold) in KNOWN_FACES.items():
        if regular in files:
            faces.append(Typeface(name, style, files[regular], files.get(bold, files[regular])))
    return tuple(faces)


def typefaces(style: str, alphabet: str = "") -> tuple[Typeface, ...]:
    """Faces of one style that can print `alphabet`; any face that can when none of that style
    can; every face when none can (the document then shows boxes for the missing characters)."""
    faces = available_typefaces()
    covering = tuple(f for f in faces if f.covers(alphabet)) or faces
    return tuple(f for f in covering if f.style == style) or covering
