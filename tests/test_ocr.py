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

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from bench.ocr import assign_to_lines, parse_row, score_lines, unturn_box
from docformer.document import Document, OCRResult, Page, Word
from docformer.io import read_document
from docformer.ocr import OCREngine, get_engine, ocr_document
from docformer.ocr import cli as ocr_cli
from docformer.ocr.engine import OCRSettings, engine_id
from docformer.ocr.layout import TextSegment, assign_lines, quad_from_box
from docformer.ocr.models import DETECTION_MODELS, RECOGNITION_MODELS
from docformer.ocr.regions import join_split_boxes, upscale_crop
from docformer.ocr.words import fold_text

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


# ---------------------------------------------------------------------------------------------
# OCR settings: engine ids, the steps between detection and recognition, the fidelity scores


def test_engine_id_names_every_setting_and_keeps_the_default_id(engine):
    # The default detects on the page shrunk to 960 px, and says so in its id; the engine that
    # detected at full resolution keeps the id it always stamped, and its caches stay its own.
    assert engine.settings == OCRSettings() and engine.engine_id == engine_id()
    assert engine.engine_id.endswith("/unclip-2.0/det-max-960/words-v1")
    full_resolution = OCRSettings(det_limit_side_len=64, det_limit_type="min")
    assert engine_id(full_resolution).endswith("/unclip-2.0/words-v1")
    variants = [
        OCRSettings(detection_model=det, recognition_model=rec)
        for det in DETECTION_MODELS
        for rec in RECOGNITION_MODELS
    ] + [
        OCRSettings(det_limit_side_len=64, det_limit_type="min"),
        OCRSettings(det_limit_side_len=960, det_limit_type="min"),
        OCRSettings(det_thresh=0.2),
        OCRSettings(det_box_thresh=0.45),
        OCRSettings(unclip_ratio=1.5),
        OCRSettings(upscale_to=48),
        OCRSettings(upscale_to=64),
        OCRSettings(join_gap=0.5),
        OCRSettings(text_form="nfkc"),
        OCRSettings(text_form="nfkc-no-accents"),
        OCRSettings(det_limit_side_len=736, text_form="nfkc-no-accents"),
    ]
    ids = [engine_id(s) for s in variants]
    assert len(set(ids)) == len(variants)
    recognisers = {engine_id(OCRSettings(recognition_model=rec)) for rec in RECOGNITION_MODELS}
    assert len(recognisers) == len(RECOGNITION_MODELS) == 3
    with pytest.raises(ValueError):
        OCRSettings(recognition_model="PP-OCRv6_medium_rec")  # not shipped
    with pytest.raises(ValueError):
        OCRSettings(text_form="ascii")


@pytest.mark.parametrize(
    "settings",
    [
        OCRSettings(
            detection_model="PP-OCRv6_tiny_det",
            recognition_model="PP-OCRv6_tiny_rec",
            upscale_to=48,
            join_gap=0.5,
            text_form="nfkc-no-accents",
        ),
        # Its PaddleX configuration is written here, not shipped: a wrong character list
        # would read garbage.
        OCRSettings(detection_model="PP-OCRv5_mobile_det", recognition_model="PP-OCRv5_mobile_rec"),
    ],
    ids=["v6-tiny-all-steps", "v5-mobile"],
)
def test_other_packaged_models_and_steps_read_a_rendered_page(settings):
    image, truth = render_page(rows=4, seed=6, size=(1240, 480))
    result = get_engine(threads=1, settings=settings).read_page(image)
    assert result.engine == engine_id(settings)
    # PP-OCRv5 drops spaces between words at full resolution: compare without them.
    read, drawn = "".join(w.text for w in result.words), "".join(t.text for t in truth)
    assert difflib.SequenceMatcher(a=read, b=drawn, autojunk=False).ratio() >= 0.95, (read, drawn)


def test_join_split_boxes_joins_pieces_of_one_printed_line_only():
    def region(x0, y0, x1, y1):
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.int16)

    regions = [
        region(10, 10, 100, 30),  # "SDN" ...
        region(110, 11, 160, 31),  # ... "BHD", half a line height to the right: one line
        region(400, 10, 460, 30),  # a price far to the right: apart
        region(10, 50, 100, 70),  # the next row
        region(105, 45, 200, 85),  # beside it but twice as tall: a heading, apart
        region(300, 40, 320, 120),  # a vertical region: never joined
    ]
    joined = join_split_boxes(regions, max_gap=1.0)
    assert len(joined) == 5
    assert joined[0].tolist() == [[10, 10], [160, 10], [160, 31], [10, 31]]
    assert joined[0].dtype == np.int16
    assert all(a is b for a, b in zip(joined[1:], regions[2:], strict=True))
    # A wider allowance reaches the price too; none joins nothing.
    assert len(join_split_boxes(regions, max_gap=15.0)) == 4
    assert join_split_boxes(regions[:1], max_gap=1.0) == regions[:1]
    assert join_split_boxes([], max_gap=1.0) == []


def test_upscale_crop_enlarges_small_crops_only():
    small = np.zeros((16, 40, 3), dtype=np.uint8)
    assert upscale_crop(small, 48).shape == (48, 120, 3)
    large = np.zeros((60, 40, 3), dtype=np.uint8)
    assert upscale_crop(large, 48) is large


def test_fold_text():
    assert fold_text("（M）SDN BHD", "nfkc") == "(M)SDN BHD"
    assert fold_text("SETIA ÁLAM", "nfkc") == "SETIA ÁLAM"
    assert fold_text("SETIA ÁLAM jéjaka", "nfkc-no-accents") == "SETIA ALAM jejaka"
    assert fold_text("海鲜 ，Á", "nfkc-no-accents") == "海鲜 ,A"
    assert fold_text("ÁLAM", "") == "ÁLAM"


def test_fidelity_scores_lines_matched_by_box_overlap():
    truth = [("TOTAL 12.00", (10, 10, 200, 30)), ("THANK YOU", (10, 50, 200, 70))]
    read = [
        ("Total", (12, 12, 60, 28)),
        ("12.0O", (140, 11, 198, 29)),  # one character wrong
        ("THANK", (12, 52, 70, 68)),
        ("谢谢", (300, 52, 340, 68)),  # outside every transcribed line
    ]
    assert assign_to_lines([box for _, box in read], [box for _, box in truth]) == [0, 0, 1, None]
    # A word mostly outside a line does not belong to it.
    assert assign_to_lines([(190, 10, 260, 30)], [(10, 10, 200, 30)]) == [None]
    scores = score_lines(truth, read)
    # "total 12.00" vs "total 12.0o": 1 edit; "thank you" vs "thank": 4 edits ("you" and a space).
    assert (scores.errors, scores.characters) == (5, 20)
    assert (scores.words_read, scores.words) == (2, 4)
    assert (scores.outside, scores.read) == (1, 4)
    assert scores.cer == 0.25 and scores.word_accuracy == 0.5


def test_unturn_box_undoes_the_page_rotation():
    # A 100 x 50 page with a box near its top-left corner.
    page, box = Image.new("L", (100, 50), 0), (10, 5, 30, 15)
    page.paste(255, box)
    for rotation in (0, 90, 180, 270):
        turned = page.rotate(rotation, expand=True)
        found = turned.getbbox()
        assert unturn_box(found, rotation, 100, 50) == box


def test_parse_row():
    settings = parse_row("v6-tiny+join_gap=1.0+det_limit_side_len=960+det_limit_type=max")
    assert settings.recognition_model == "PP-OCRv6_tiny_rec" and settings.join_gap == 1.0
    assert (settings.det_limit_side_len, settings.det_limit_type) == (960, "max")
    assert parse_row("det-max-960") == OCRSettings()  # the table's choice is the default
    assert parse_row("full-res") == OCRSettings(det_limit_side_len=64, det_limit_type="min")
    with pytest.raises(ValueError):
        parse_row("full-res+speed=fast")
    with pytest.raises(ValueError):
        parse_row("tomorrow")
