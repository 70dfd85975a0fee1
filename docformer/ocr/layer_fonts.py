"""The fonts of the searchable PDF's invisible text layer (`docformer.ocr.searchable_pdf`).

Invisible text needs no glyph shapes, only its characters and their widths; what a font costs
is fpdf2 parsing and subsetting it once per PDF. So:

- **Noto Sans** (OCRmyPDF's), cut once per machine to the scripts documents print
  (`LAYER_FONT_RANGES`) and without its layout tables, which invisible text never shapes
  with: the whole 560 KB font was about half of a page's PDF time (bench/archive.py).
- **A glyphless font for the rest**, made per document for exactly the characters Noto Sans
  lacks (CJK, Arabic, a stray symbol OCR read), with the widths OCRmyPDF's glyphless Occulta
  gives them. Occulta itself maps all of Unicode, and embedding it cost 0.2–0.5 s for every
  document that needed it.
- **Not the system's fonts** (OCRmyPDF's default search): that search cost 285 ms for one
  receipt's two CJK characters, and the PDF would depend on what the machine has installed.
  OCRmyPDF's warning that glyphless text "appears blank" is not ours to show, for the same
  reason: the whole layer is invisible.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from functools import cache, lru_cache
from pathlib import Path

LAYER_FONTS_VERSION = 2  # bump when the ranges change: the folder of fonts made from them moves
# Latin with its extensions and combining marks, Greek, Cyrillic, punctuation, super- and
# subscripts, currency, letterlike symbols, number forms, arrows, mathematical operators, the
# Latin ligatures.
LAYER_FONT_RANGES = (
    (0x0020, 0x036F), (0x0370, 0x052F), (0x1D00, 0x1FFF), (0x2000, 0x22FF), (0xFB00, 0xFB06),
)  # fmt: skip
# OCRmyPDF looks its glyphless fallback up by this name.
FALLBACK_NAME = "Occulta"

# The fonts are shared by the threads of a process (the flows archive chunks in task threads)
# and read through fontTools and HarfBuzz objects that are not safe to load from two threads at
# once: making them and drawing with them happen under this lock.
LAYER_FONTS_LOCK = threading.Lock()


def font_manager_for(text: str):
    """OCRmyPDF's font manager for a text layer of `text`: Noto Sans, and a glyphless font for
    the characters it lacks, if any. Call under LAYER_FONTS_LOCK."""
    from ocrmypdf.font import MultiFontManager

    base = _base_provider()
    noto = base.get_font("NotoSans-Regular")
    missing = frozenset(
        char for char in text if not char.isspace() and not noto.has_glyph(ord(char))
    )
    if not missing:
        return _base_manager()
    return MultiFontManager(font_provider=_WithFallback(base, _glyphless_font(missing)))


class _WithFallback:
    """OCRmyPDF's font provider protocol: the shared fonts, and this document's glyphless one
    where OCRmyPDF asks for its fallback."""

    def __init__(self, base, fallback):
        self.base = base
        self.fallback = fallback

    def get_font(self, font_name: str):
        return self.fallback if font_name == FALLBACK_NAME else self.base.get_font(font_name)

    def get_available_fonts(self) -> list[str]:
        return self.base.get_available_fonts()

    def get_fallback_font(self):
        return self.fallback

    def find_font_with_glyphs(self, text: str):
        return self.base.find_font_with_glyphs(text)


@cache
def _base_provider():
    from ocrmypdf.font.font_provider import BuiltinFontProvider

    logging.getLogger("ocrmypdf.font.multi_font_manager").setLevel(logging.ERROR)
    return BuiltinFontProvider(layer_font_dir())


@cache
def _base_manager():
    from ocrmypdf.font import MultiFontManager

    return MultiFontManager(font_provider=_base_provider())


def layer_font_dir() -> Path:
    """A folder holding the fonts OCRmyPDF's provider loads: Noto Sans cut to LAYER_FONT_RANGES
    and Occulta as shipped (which it requires to exist), made once per machine and OCRmyPDF
    version under the docformer cache (written to a temporary name and renamed, so processes
    may race)."""
    import ocrmypdf
    import ocrmypdf.data
    from fontTools import subset

    from docformer.ocr.models import cache_dir

    shipped = Path(ocrmypdf.data.__file__).parent
    folder = (
        cache_dir() / "text-layer-fonts" / f"ocrmypdf-{ocrmypdf.__version__}-v{LAYER_FONTS_VERSION}"
    )
    if (folder / "NotoSans-Regular.ttf").is_file() and (folder / "Occulta.ttf").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    options = subset.Options()
    options.layout_features = []
    options.drop_tables += ["GSUB", "GPOS", "GDEF"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    font = subset.load_font(str(shipped / "NotoSans-Regular.ttf"), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(
        unicodes=[code for low, high in LAYER_FONT_RANGES for code in range(low, high + 1)]
    )
    subsetter.subset(font)
    for name, write in (
        ("Occulta.ttf", lambda path: shutil.copyfile(shipped / "Occulta.ttf", path)),
        ("NotoSans-Regular.ttf", lambda path: subset.save_font(font, str(path), options)),
    ):
        temporary = folder / f".{name}.{os.getpid()}.{threading.get_ident()}"
        write(temporary)
        os.replace(temporary, folder / name)
    return folder


@cache
def _occulta() -> tuple[dict[int, str], dict[str, tuple[int, int]], int, int, int]:
    """Occulta's character map, glyph widths, units per em, ascent and descent, read once."""
    from fontTools.ttLib import TTFont

    font = TTFont(str(layer_font_dir() / "Occulta.ttf"))
    return (
        dict(font.getBestCmap()),
        dict(font["hmtx"].metrics),
        font["head"].unitsPerEm,
        font["hhea"].ascent,
        font["hhea"].descent,
    )


@lru_cache(maxsize=256)
def _glyphless_font(characters: frozenset[str]):
    """A glyphless font mapping exactly `characters` to Occulta's blank glyphs (so with
    Occulta's widths: none for combining marks, a full em for CJK), as OCRmyPDF's FontManager.
    Characters Occulta does not map get its ordinary blank."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from ocrmypdf.font.font_manager import FontManager

    cmap, widths, units_per_em, ascent, descent = _occulta()
    ordinary = cmap.get(ord("a"), "blank1")
    mapping = {ord(char): cmap.get(ord(char), ordinary) for char in characters}
    glyphs = [".notdef", *sorted(set(mapping.values()))]
    empty = TTGlyphPen(None).glyph()
    builder = FontBuilder(units_per_em, isTTF=True)
    builder.setupGlyphOrder(glyphs)
    builder.setupCharacterMap(mapping)
    builder.setupGlyf({name: empty for name in glyphs})
    builder.setupHorizontalMetrics({name: widths.get(name, (500, 0)) for name in glyphs})
    builder.setupHorizontalHeader(ascent=ascent, descent=descent)
    builder.setupNameTable({"familyName": "DocformerGlyphless", "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=ascent, sTypoDescender=descent, usWinAscent=ascent,
                     usWinDescent=-descent)  # fmt: skip
    builder.setupPost()
    digest = hashlib.sha256("".join(sorted(characters)).encode()).hexdigest()[:16]
    path = _scratch() / f"glyphless-{digest}.ttf"
    builder.save(str(path))
    return FontManager(path)


@cache
def _scratch() -> Path:
    """This process's folder for the per-document glyphless fonts, removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="docformer-layer-fonts-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


__all__ = ["LAYER_FONTS_LOCK", "LAYER_FONT_RANGES", "font_manager_for", "layer_font_dir"]
