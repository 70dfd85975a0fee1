"""OCR with the real offline PaddleOCR engine on pages rendered here with known text.

Each page costs a few seconds of OCR on a busy machine, so the pages are few and each test
checks several things on the same reading.
"""

from __future__ import annotations

import difflib
import json
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from docformer.document import Document, OCRResult, Page, Word
from docformer.io import read_document
from docformer.ocr import OCREngine, get_engine, ocr_document
from docformer.ocr import cli as ocr_cli
from docformer.ocr.layout import TextSegment, assign_lines, quad_from_box

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@cache
def font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans where the system has it; otherwise the scalable font bundled with Pillow
    (Aileron, Pillow >= 10.1), so a bare machine renders the same kind of pages."""
    if DEJAVU.is_file():
        return ImageFont.truetype(str(DEJAVU), size)
    return ImageFont.load_default(size=size)


VOCABULARY = [
    "invoice",
    "total",
    "amount",
    "due",
    "payment",
    "terms",
    "net",
    "thirty",
    "days",
    "customer",
    "number",
    "order",
    "reference",
    "account",
    "balance",
    "quantity",
    "price",
    "description",
    "shipping",
    "address",
    "phone",
    "email",
    "date",
    "tax",
    "subtotal",
    "discount",
    "Invoice",
    "Total",
    "Customer",
    "Payment",
]


@dataclass
class RenderedWord:
    text: str
    box: tuple[float, float, float, float]
    line: int  # index of the rendered line, numbered in reading order


def random_word(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.15:
        return f"{rng.randint(1, 9999)}.{rng.randint(0, 99):02d}"
    if roll < 0.22:
        return f"INV-{rng.randint(1000, 9999)}"
    if roll < 0.27:
        return f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/2024"
    return rng.choice(VOCABULARY)


def render_page(rows: int, seed: int = 0, size=(1240, 1100), font_size: int = 26):
    """A title across the page above a two-column body; the words drawn and their boxes.

    Reading order is the title, then the whole left column, then the whole right column."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    face = font(font_size)
    space = face.getlength(" ")
    lines: list[tuple[float, float, list[str]]] = [(100, 70, [random_word(rng) for _ in range(6)])]
    column_width = (size[0] - 300) / 2
    for x in (100, 100 + column_width + 100):
        for row in range(rows):
            words: list[str] = []
            while (
                len(words) < 3 and face.getlength(" ".join([*words, "description"])) < column_width
            ):
                words.append(random_word(rng))
            lines.append((x, 180 + row * 45, words))
    truth = []
    for line_index, (x, y, words) in enumerate(lines):
        for text in words:
            box = draw.textbbox((x, y), text, font=face)
            draw.text((x, y), text, font=face, fill="black")
            truth.append(RenderedWord(text, box, line_index))
            x = box[2] + space
    return image, truth


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def align(words: list[Word], truth: list[RenderedWord]) -> list[tuple[Word, RenderedWord]]:
    """Pairs of read and rendered words with equal text, in reading order."""
    matcher = difflib.SequenceMatcher(
        a=[w.text for w in words], b=[t.text for t in truth], autojunk=False
    )
    return [
        (words[block.a + k], truth[block.b + k])
        for block in matcher.get_matching_blocks()
        for k in range(block.size)
    ]


@pytest.fixture(scope="module")
def engine() -> OCREngine:
    # One thread: the test machine is small and shared.
    return get_engine(threads=1)


@pytest.fixture(scope="module")
def page_and_truth():
    return render_page(rows=9, seed=1)


def check_reading(result: OCRResult, truth: list[RenderedWord]) -> list[tuple[Word, RenderedWord]]:
    """Word accuracy and line grouping against the rendered truth; the matched pairs."""
    pairs = align(result.words, truth)
    accuracy = len(pairs) / len(truth)
    assert accuracy >= 0.98, (accuracy, result.text)
    assert len(result.words) <= len(truth) + 2

    # Line ids group words exactly as they were rendered, lines numbered in reading order.
    line_of = {}
    for word, rendered in pairs:
        assert line_of.setdefault(rendered.line, word.line_id) == word.line_id, (word, rendered)
    assert sorted(line_of.values()) == [line_of[k] for k in sorted(line_of)]
    assert len(set(line_of.values())) == len(line_of)
    return pairs


def test_upright_page_words_boxes_lines_and_columns(engine, page_and_truth):
    image, truth = page_and_truth
    result = engine.read_page(image)
    assert result.rotation == 0
    assert (result.width, result.height) == image.size
    assert result.engine == engine.engine_id and "PP-OCRv6_small" in result.engine
    pairs = check_reading(result, truth)
    good_boxes = sum(iou(word.box, rendered.box) >= 0.5 for word, rendered in pairs)
    assert good_boxes / len(truth) >= 0.95
    assert all(0.5 < word.confidence <= 1.0 for word in result.words)

    # The result survives its JSON form unchanged.
    assert OCRResult.from_json(result.to_json()) == result


@pytest.mark.parametrize("degrees", [180, 90])
def test_turned_page_reads_as_well_as_upright(engine, degrees):
    image, truth = render_page(rows=4, seed=2, size=(1240, 480))
    turned = image.rotate(-degrees, expand=True, fillcolor="white")  # clockwise, as scanned
    result = engine.read_page(turned)
    assert result.rotation == degrees  # turning it back is `degrees` counter-clockwise
    assert (result.width, result.height) == image.size
    pairs = check_reading(result, truth)
    good_boxes = sum(iou(word.box, rendered.box) >= 0.5 for word, rendered in pairs)
    assert good_boxes / len(truth) >= 0.95


def test_skewed_scan_keeps_lines_apart(engine):
    image, truth = render_page(rows=4, seed=3, size=(1240, 480))
    skewed = image.rotate(2.5, expand=False, fillcolor="white", resample=Image.BICUBIC)
    result = engine.read_page(skewed)
    assert result.rotation == 0
    check_reading(result, truth)


def test_ocr_document_skips_text_layer_pages_and_turns_pages_upright(engine):
    image, truth = render_page(rows=3, seed=4, size=(1000, 340))
    scanned = Page(index=0, width=340, height=1000, image=image.rotate(90, expand=True))
    born_digital = Page(
        index=1,
        width=100,
        height=100,
        image=Image.new("RGB", (100, 100), "white"),
        ocr=OCRResult(100, 100, [Word("kept", (1, 1, 20, 10))], "pdf-text-layer"),
        has_text_layer=True,
    )
    doc = ocr_document(Document("mem://x", "0" * 64, "image/tiff", [scanned, born_digital]))
    assert doc.pages[1].ocr.words[0].text == "kept"  # untouched
    page = doc.pages[0]
    assert page.ocr.rotation == 270
    assert (page.width, page.height) == page.image.size == image.size
    check_reading(page.ocr, truth)


def test_cli_prints_json(engine, tmp_path, capsys):
    image, truth = render_page(rows=3, seed=5, size=(1000, 340))
    path = tmp_path / "scan.png"
    image.save(path)
    bad = tmp_path / "notes.pdf"
    bad.write_bytes(b"<html>expired</html>")
    assert ocr_cli.main([str(path), str(bad), "--json"]) == 1
    out, err = capsys.readouterr()
    assert "notes.pdf" in err and "HTML" in err
    record = json.loads(out.strip())
    assert record["media_type"] == "image/png" and len(record["sha256"]) == 64
    result = OCRResult.from_dict(record["pages"][0]["ocr"])
    check_reading(result, truth)
    # The same file read through the library gives the same document hash.
    assert read_document(path.read_bytes(), str(path)).sha256 == record["sha256"]


def test_reading_order_of_columns_and_receipt_rows_without_ocr():
    def segment(text: str, box) -> TextSegment:
        x0, y0, x1, y1 = box
        words, step = text.split(), (x1 - x0) / len(text.split())
        return TextSegment(
            [Word(w, (x0 + i * step, y0, x0 + (i + 1) * step, y1)) for i, w in enumerate(words)],
            quad_from_box(box),
        )

    # A receipt: item and price on one row stay one line even with a wide gap between them.
    receipt = [
        segment("Coffee beans", (10, 10, 150, 30)),
        segment("12.00", (400, 11, 460, 31)),
        segment("Milk", (10, 40, 60, 60)),
        segment("1.20", (410, 41, 460, 61)),
        segment("Bread", (10, 70, 80, 90)),
        segment("2.50", (410, 70, 460, 90)),
        segment("TOTAL", (10, 110, 90, 130)),
        segment("15.70", (400, 110, 460, 130)),
    ]
    words = assign_lines(receipt[::-1])
    assert [w.text for w in words] == [
        "Coffee",
        "beans",
        "12.00",
        "Milk",
        "1.20",
        "Bread",
        "2.50",
        "TOTAL",
        "15.70",
    ]
    assert [w.line_id for w in words] == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert assign_lines([]) == []
