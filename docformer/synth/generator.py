"""Generate labelled synthetic documents: draw, scan, write.

`render_document(kind, seed, index)` makes one document in memory; `generate(kind, n, seed,
out_dir)` writes n of them in the labelled-folder format (`docformer.labelled`): the page as
PNG / JPEG / PDF / TIFF, `<name>.json` with the key fields as printed, `<name>.ocr.json` with
every word's box and line. Document i of a run depends only on (kind, seed, i), so runs are
reproducible byte for byte on one machine and can be split across processes by index.
"""

from __future__ import annotations

import io
import random
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from docformer.document import OCRResult, Word
from docformer.labelled import write_labelled_example
from docformer.synth.canvas import Canvas
from docformer.synth.degrade import MAX_SIDE, clean, scan, warp
from docformer.synth.invoice import draw_invoice
from docformer.synth.office import draw_form, draw_letter, draw_table
from docformer.synth.receipt import draw_receipt
from docformer.synth.regions import pick_region
from docformer.synth.style import Style

ENGINE = "docformer-synth/1"  # the OCR "engine" of ground-truth words

KINDS = ("receipt", "invoice", "purchase_order", "form", "table", "letter")
# How often each kind appears in a mixed corpus: receipts and invoices are what gets extracted.
MIXED_WEIGHTS = {
    "receipt": 0.4,
    "invoice": 0.25,
    "purchase_order": 0.07,
    "form": 0.1,
    "table": 0.08,
    "letter": 0.1,
}

# Per kind: (typeface style weights, body size range, chance of all capitals, paper).
LOOKS = {
    "receipt": ({"mono": 0.45, "sans": 0.45, "serif": 0.1}, (15, 22), 0.0, "thermal"),
    "invoice": ({"sans": 0.7, "serif": 0.2, "mono": 0.1}, (14, 19), 0.1, "office"),
    "purchase_order": ({"sans": 0.7, "serif": 0.2, "mono": 0.1}, (14, 19), 0.1, "office"),
    "form": ({"sans": 0.6, "serif": 0.3, "mono": 0.1}, (14, 19), 0.1, "office"),
    "table": ({"sans": 0.7, "serif": 0.15, "mono": 0.15}, (13, 17), 0.1, "office"),
    "letter": ({"serif": 0.5, "sans": 0.5}, (14, 18), 0.0, "office"),
}
DRAW = {
    "receipt": draw_receipt,
    "invoice": draw_invoice,
    "purchase_order": lambda style: draw_invoice(style, purchase_order=True),
    "form": draw_form,
    "table": draw_table,
    "letter": draw_letter,
}
# Which file types each kind is saved as, and how often.
FORMATS = {
    "receipt": {".jpg": 0.75, ".png": 0.25},
    "invoice": {".png": 0.35, ".jpg": 0.3, ".pdf": 0.2, ".tif": 0.15},
    "letter": {".png": 0.35, ".jpg": 0.3, ".pdf": 0.2, ".tif": 0.15},
    "default": {".png": 0.5, ".jpg": 0.35, ".tif": 0.15},
}


@dataclass
class SynthDocument:
    name: str
    kind: str
    image: Image.Image
    ocr: OCRResult
    fields: dict[str, str]
    suffix: str  # ".png", ".jpg", ".pdf" or ".tif"
    jpeg_quality: int = 85

    def encode(self) -> bytes:
        """The page as file bytes, deterministic: fixed encoder settings and PDF dates."""
        buffer = io.BytesIO()
        image = self.image
        if self.suffix == ".jpg":
            image.save(buffer, "JPEG", quality=self.jpeg_quality)
        elif self.suffix == ".png":
            image.save(buffer, "PNG", compress_level=1)
        elif self.suffix == ".tif":
            image.save(buffer, "TIFF", compression="tiff_lzw")
        elif self.suffix == ".pdf":
            # 72 dpi: one PDF point per pixel, so a 1x render reproduces the OCR page size.
            fixed = time.gmtime(1_500_000_000)
            image.convert("RGB").save(
                buffer, "PDF", resolution=72.0, creationDate=fixed, modDate=fixed
            )
        else:
            raise ValueError(f"unknown suffix {self.suffix}")
        return buffer.getvalue()


def pick_kind(kind: str, seed: int, index: int) -> str:
    if kind != "mixed":
        return kind
    rng = random.Random(f"mixed/{seed}/{index}")
    return rng.choices(list(MIXED_WEIGHTS), list(MIXED_WEIGHTS.values()))[0]


def render_document(kind: str, seed: int, index: int = 0, degrade: bool = True) -> SynthDocument:
    """Document `index` of the run (kind, seed); kind may be "mixed"."""
    kind = pick_kind(kind, seed, index)
    if kind not in DRAW:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)} or 'mixed'")
    for attempt in range(20):
        key = f"{kind}/{seed}/{index}/{attempt}"
        rng = random.Random(key)
        faces, sizes, upper_p, paper = LOOKS[kind]
        region = pick_region(rng, kind)
        upper = upper_p + (
            0.75
            if kind == "receipt" and region.code == "MY"
            else 0.15
            if kind == "receipt"
            else 0.0
        )
        style = Style.pick(rng, region, faces, sizes, upper)
        canvas = DRAW[kind](style)
        if not canvas.overflowed:
            break
    else:  # pragma: no cover - every kind fits its sheet far more often than this
        raise RuntimeError(f"could not fit document {key} on its sheet")
    words = canvas.words()
    image, boxes = finish(
        canvas, words, np.random.default_rng(zlib.crc32(key.encode())), paper if degrade else None
    )
    ocr = OCRResult(
        image.width,
        image.height,
        [
            Word(w.text, tuple(round(v, 2) for v in box), 1.0, w.line_id)
            for w, box in zip(words, boxes, strict=True)
        ],
        ENGINE,
    )
    formats = FORMATS.get(kind, FORMATS["default"])
    suffix = rng.choices(list(formats), list(formats.values()))[0]
    return SynthDocument(
        f"{kind}_{seed}_{index:06d}",
        kind,
        image,
        ocr,
        dict(style.fields),
        suffix,
        rng.randint(40, 92),
    )


def finish(
    canvas: Canvas, words: list[Word], rng: np.random.Generator, paper: str | None
) -> tuple[Image.Image, list]:
    boxes = [w.box for w in words]
    if paper is None:
        ink = canvas.ink
        if max(ink.size) > MAX_SIDE:  # shrink to the size limit, boxes alongside
            scale = MAX_SIDE / max(ink.size)
            size = (round(ink.width * scale), round(ink.height * scale))
            sx, sy = size[0] / ink.width, size[1] / ink.height
            ink = warp(ink, np.diag([sx, sy, 1.0]), size)
            boxes = [(x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in boxes]
        return clean(ink), boxes
    return scan(canvas.ink, boxes, rng, paper)


def generate(
    kind: str, n: int, seed: int, out_dir: str | Path, degrade: bool = True, start: int = 0
) -> list[Path]:
    """Write documents start..start+n-1 of the run (kind, seed) to out_dir; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(start, start + n):
        doc = render_document(kind, seed, index, degrade)
        paths.append(write_labelled_example(out, doc.name, doc.encode(), doc.fields, [doc.ocr]))
    return paths
