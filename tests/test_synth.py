"""The synthetic corpus: reproducible, every box on its ink, every field on the page."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from docformer.labelled import iter_labelled_folder
from docformer.synth import KINDS, generate, render_document

FIELD_NAMES = {"company", "date", "address", "total", "invoice_number", "tax", "currency"}


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def reading_text(doc) -> str:
    return " ".join(" ".join(w.text for w in line) for line in doc.ocr.lines())


@pytest.mark.parametrize("kind", ["receipt", "invoice"])
def test_same_seed_gives_identical_bytes_and_labels(kind):
    first, second = render_document(kind, seed=5, index=3), render_document(kind, seed=5, index=3)
    assert first.encode() == second.encode()
    assert first.fields == second.fields
    assert first.ocr.to_json() == second.ocr.to_json()


def test_every_file_format_encodes_deterministically():
    doc = render_document("letter", seed=5, index=0)
    for suffix in (".png", ".jpg", ".pdf", ".tif"):
        first = dataclasses.replace(doc, suffix=suffix).encode()
        if suffix == ".pdf":
            time.sleep(1.1)  # a PDF writer that stamps the time would now differ
        assert dataclasses.replace(doc, suffix=suffix).encode() == first


def test_different_seeds_or_indices_give_different_documents():
    base = render_document("receipt", seed=1, index=0)
    assert render_document("receipt", seed=2, index=0).encode() != base.encode()
    assert render_document("receipt", seed=1, index=1).encode() != base.encode()


def test_generate_is_reproducible_on_disk(tmp_path):
    generate("mixed", 4, seed=11, out_dir=tmp_path / "a")
    generate("mixed", 4, seed=11, out_dir=tmp_path / "b")
    generate("mixed", 4, seed=12, out_dir=tmp_path / "c")
    a, b, c = (folder_digest(tmp_path / name) for name in "abc")
    assert a == b
    assert len(a) == 12  # document, fields, OCR for each of 4
    assert a != c


def ink_mask(image: Image.Image) -> np.ndarray:
    # Text is black with anti-aliased edges on clean renders; shaded table headers are lighter.
    return np.asarray(image.convert("L")) < 200


@pytest.mark.parametrize("kind", KINDS)
def test_boxes_are_tight_to_the_ink_on_clean_renders(kind):
    for index in range(2):
        doc = render_document(kind, seed=21, index=index, degrade=False)
        ink = ink_mask(doc.image)
        height, width = ink.shape
        assert (doc.ocr.width, doc.ocr.height) == (width, height)
        assert doc.ocr.words
        for word in doc.ocr.words:
            x0, y0, x1, y1 = word.box
            # Look one pixel beyond the box: ink there would mean the box cuts the word.
            cx0, cy0 = max(0, int(np.floor(x0)) - 1), max(0, int(np.floor(y0)) - 1)
            cx1, cy1 = min(width, int(np.ceil(x1)) + 1), min(height, int(np.ceil(y1)) + 1)
            crop = ink[cy0:cy1, cx0:cx1]
            ys, xs = np.nonzero(crop)
            assert len(xs), f"{kind}/{index}: no ink under {word.text!r} at {word.box}"
            ix0, iy0, ix1, iy1 = (
                xs.min() + cx0,
                ys.min() + cy0,
                xs.max() + 1 + cx0,
                ys.max() + 1 + cy0,
            )
            inter = max(0.0, min(x1, ix1) - max(x0, ix0)) * max(0.0, min(y1, iy1) - max(y0, iy0))
            union = (x1 - x0) * (y1 - y0) + (ix1 - ix0) * (iy1 - iy0) - inter
            assert inter / union > 0.8, (
                f"{kind}/{index}: {word.text!r} box {word.box} vs ink {(ix0, iy0, ix1, iy1)}"
            )


@pytest.mark.parametrize("kind", KINDS)
def test_fields_are_printed_verbatim_in_reading_order(kind):
    seen: set[str] = set()
    for index in range(6):
        doc = render_document(kind, seed=31, index=index)
        text = reading_text(doc)
        assert set(doc.fields) <= FIELD_NAMES
        for name, value in doc.fields.items():
            assert value and value == " ".join(value.split())
            assert value in text, f"{kind}/{index}: {name}={value!r} not in {text!r}"
        seen |= set(doc.fields)
    assert {"company", "date"} <= seen or kind == "form"


@pytest.mark.parametrize("kind", [*KINDS, "mixed"])
def test_every_kind_generates_a_readable_scanned_document(kind):
    doc = render_document(kind, seed=41, index=0)
    data = doc.encode()
    if doc.suffix == ".pdf":
        import pypdfium2

        page = pypdfium2.PdfDocument(data)[0]
        assert (round(page.get_width()), round(page.get_height())) == (
            doc.ocr.width,
            doc.ocr.height,
        )
    else:
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == (doc.ocr.width, doc.ocr.height)
    assert max(doc.ocr.width, doc.ocr.height) <= 1600
    for word in doc.ocr.words:
        x0, y0, x1, y1 = word.box
        assert 0 <= x0 < x1 <= doc.ocr.width and 0 <= y0 < y1 <= doc.ocr.height
    line_ids = [w.line_id for w in doc.ocr.words]
    assert line_ids == sorted(line_ids)
    assert doc.fields


def test_receipts_cover_the_target_styles():
    """Over a small batch: Malaysian receipts, rounding, several date styles and currencies."""
    texts, dates, currencies = [], set(), set()
    for index in range(40):
        doc = render_document("receipt", seed=51, index=index)
        texts.append(reading_text(doc).upper())
        dates.add(
            "".join("9" if c.isdigit() else "A" if c.isalpha() else c for c in doc.fields["date"])
        )
        currencies.add(doc.fields.get("currency"))
    joined = " ".join(texts)
    assert "SDN BHD" in joined or "SDN. BHD." in joined
    assert "JALAN" in joined or "JLN" in joined
    assert "ROUND" in joined and "CHANGE" in joined
    assert len(dates) >= 4
    assert "RM" in currencies and len(currencies - {None}) >= 2


def test_synth_command_writes_a_labelled_folder(tmp_path):
    out = tmp_path / "corpus"
    command = [
        sys.executable,
        "-m",
        "docformer.cli",
        "synth",
        "--kind",
        "mixed",
        "--n",
        "3",
        "--seed",
        "7",
        "--out",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    examples = list(iter_labelled_folder(out))
    assert len(examples) == 3
    for example in examples:
        assert example.fields and example.ocr_pages and example.ocr_pages[0].words
    # Another process, the same bytes: nothing depends on process state.
    generate("mixed", 3, seed=7, out_dir=tmp_path / "here")
    assert folder_digest(out) == folder_digest(tmp_path / "here")
