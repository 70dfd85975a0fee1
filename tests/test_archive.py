"""The archive outputs (issue "Digitized means searchable"): searchable PDF, ALTO v4 and hOCR.

The text layer is read back the way a person's PDF viewer would find it, with poppler's
`pdftotext` (Debian's poppler-utils, installed by `make test`): the words in reading order, and
each within its OCR box. One small page is rendered here and read once by the real PaddleOCR
engine; the other cases place known words on known boxes. The digitize flow's part (objects in
the archive bucket, rows in `archive_outputs`, nothing rewritten on a re-run) runs on the real
PostgreSQL, SeaweedFS and a Prefect test API, with the page's OCR in the cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
from functools import cache

import numpy as np
import pikepdf
import pytest
from PIL import Image, ImageDraw
from test_ocr import font
from test_reading import text_pdf

from docformer.document import Document, OCRResult, Page, Word
from docformer.io import read_document
from docformer.ocr.export import read_alto, to_alto, to_hocr, validate_alto
from docformer.ocr.searchable_pdf import searchable_pdf

# `make test` installs poppler-utils; a bare `pytest` without it skips these, except on CI, where
# a missing pdftotext must fail rather than pass unseen.
pytestmark = pytest.mark.skipif(
    shutil.which("pdftotext") is None and not os.environ.get("CI"),
    reason="pdftotext (Debian's poppler-utils) is installed by make test",
)

LINES = [
    "Invoice INV-4471 dated 12/03/2024",
    "Customer account 88120 balance due",
    "Subtotal 1034.32 tax 196.52",
    "Total amount 1230.84 payment terms net thirty days",
]


def render_scan(size=(1000, 300)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(LINES):
        draw.text((40, 30 + row * 65), line, font=font(30), fill="black")
    return image


@cache
def scanned_page() -> tuple[bytes, OCRResult]:
    """The rendered page as PNG bytes and what the real OCR engine read on it (once per run)."""
    from docformer.ocr import get_engine, ocr_document

    buffer = io.BytesIO()
    render_scan().save(buffer, format="PNG")
    data = buffer.getvalue()
    document = read_document(data, "scan.png")
    ocr_document(document, get_engine(threads=1))
    return data, document.pages[0].ocr


def one_page_document(ocr: OCRResult, media_type: str, text_layer: bool = False) -> Document:
    page = Page(0, ocr.width, ocr.height, None, ocr, has_text_layer=text_layer)
    return Document("scan", "0" * 64, media_type, [page])


# pdftotext marks right-to-left runs with Unicode embedding controls; the words are without.
BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def pdftotext(pdf: bytes, *options: str) -> str:
    return (
        subprocess.run(
            ["pdftotext", *options, "-", "-"], input=pdf, capture_output=True, check=True
        )
        .stdout.decode()
        .translate(BIDI_CONTROLS)
    )


def bbox_words(pdf: bytes) -> list[tuple[str, tuple[float, float, float, float], float, float]]:
    """`pdftotext -bbox` words: text, box in points (top-left origin of the crop box), and the
    page's size."""
    html = pdftotext(pdf, "-bbox", "-cropbox")  # the crop box is the page pdfium renders
    width, height = map(
        float, re.search(r'<page width="([\d.]+)" height="([\d.]+)"', html).groups()
    )
    pattern = (
        r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
    )
    return [
        (text, (float(x0), float(y0), float(x1), float(y1)), width, height)
        for x0, y0, x1, y1, text in re.findall(pattern, html)
    ]


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def placed_share(
    pdf: bytes, words: list[Word], pixel_size: tuple[int, int], shown_points=None
) -> float:
    """The share of `words` that pdftotext finds with the same text, IoU >= 0.5 with its box
    (pdftotext's points scaled to the page's pixels). pdftotext gives boxes on the page as
    shown but the size of the page before its /Rotate: pass the shown size for a turned page."""
    found = bbox_words(pdf)
    on_box = 0
    for word in words:
        best = 0.0
        for text, box, *reported in found:
            width, height = shown_points or reported
            # -bbox gives a right-to-left word in visual order, letters reversed
            if text in (word.text, word.text[::-1]):
                sx, sy = pixel_size[0] / width, pixel_size[1] / height
                scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
                best = max(best, iou(scaled, word.box))
        on_box += best >= 0.5
    return on_box / len(words)


def page_images(pdf: bytes) -> list[tuple[list[str], bytes, Image.Image]]:
    """Every page image: its filters, its stream's bytes as stored, and its pixels."""
    with pikepdf.open(io.BytesIO(pdf)) as document:
        images = [
            pikepdf.PdfImage(image)
            for page in document.pages
            for image in page.get_images().values()
        ]
        return [(i.filters, i.obj.read_raw_bytes(), i.as_pil_image()) for i in images]


# --- the searchable PDF ------------------------------------------------------------------------


def test_the_text_layer_reads_back_in_order_on_the_ocr_boxes_over_the_same_pixels():
    data, ocr = scanned_page()
    assert len(ocr.words) >= 20, ocr.text
    made = searchable_pdf(one_page_document(ocr, "image/png"), data)
    assert made.pdfa and made.pdfa_problem is None and made.pages_with_layer == 1

    # Selecting all and copying gives the words OCR read, in its reading order: in the order the
    # layer holds them (-raw) and as poppler's own reading-order analysis puts them.
    assert pdftotext(made.data, "-raw").split() == [w.text for w in ocr.words]
    assert pdftotext(made.data).split() == [w.text for w in ocr.words]
    # Each word lies on its box (IoU against the OCR box, in page pixels).
    assert placed_share(made.data, ocr.words, (ocr.width, ocr.height)) >= 0.95
    # The page image is the PNG's own pixels: embedded losslessly, not re-encoded.
    [(_, _, pixels)] = page_images(made.data)
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(np.asarray(pixels.convert("RGB")), original)
    # And it declares PDF/A-2b in its metadata.
    with pikepdf.open(io.BytesIO(made.data)) as pdf:
        assert pdf.open_metadata().pdfa_status == "2B"


def test_a_jpeg_keeps_its_compressed_bytes_and_a_scanned_pdf_its_page_objects():
    import img2pdf

    _, ocr = scanned_page()
    buffer = io.BytesIO()
    render_scan().save(buffer, format="JPEG", quality=80)
    jpeg = buffer.getvalue()
    made = searchable_pdf(one_page_document(ocr, "image/jpeg"), jpeg)
    [(filters, stored, _)] = page_images(made.data)
    assert filters == ["/DCTDecode"] and stored == jpeg  # not decoded, not encoded again

    scanned = img2pdf.convert(jpeg)  # as a scanner would make it: a page holding the image
    made = searchable_pdf(one_page_document(ocr, "application/pdf"), scanned)
    [(_, stored, _)] = page_images(made.data)
    assert stored == jpeg
    assert pdftotext(made.data, "-raw").split() == [w.text for w in ocr.words]


def test_a_born_digital_pdf_comes_out_as_it_came_in():
    data, _ = text_pdf([("Invoice", 72, 700), ("INV-4471", 140, 700), ("Total", 72, 680)])
    document = read_document(data, "digital.pdf")
    assert all(page.has_text_layer for page in document.pages)
    made = searchable_pdf(document, data)
    assert made.kept_as_is and made.data == data and made.pages_with_layer == 0
    assert pdftotext(made.data, "-raw").split() == ["Invoice", "INV-4471", "Total"]


def test_words_the_layer_font_lacks_stay_searchable_on_their_boxes():
    """CJK, Arabic and a symbol outside the text layer's Noto Sans go to a glyphless font made
    for them: still extracted as read, on their boxes, and the file still PDF/A-2b."""
    words = [
        Word("Total", (20, 20, 120, 50), 0.9, 0), Word("本末", (140, 20, 220, 50), 0.9, 0),
        Word("مجموع", (20, 80, 150, 110), 0.9, 1), Word("₿42", (170, 80, 250, 110), 0.9, 1),
        Word("Zażółć", (20, 140, 160, 170), 0.9, 2),
    ]  # fmt: skip
    ocr = OCRResult(300, 200, words, "test-engine")
    blank = io.BytesIO()
    Image.new("RGB", (300, 200), "white").save(blank, format="PNG")
    made = searchable_pdf(one_page_document(ocr, "image/png"), blank.getvalue())
    assert made.pdfa
    assert pdftotext(made.data, "-raw").split() == [w.text for w in words]
    assert placed_share(made.data, words, (300, 200)) == 1.0


def turned_box(box, size: tuple[int, int], degrees: int) -> tuple[float, ...]:
    """Where `box` lands when the page image is turned `degrees` counter-clockwise, found by
    turning a picture of it with PIL, as OCR turns a page (independently of the code tested)."""
    picture = Image.new("L", size, 0)
    ImageDraw.Draw(picture).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
    x0, y0, x1, y1 = picture.rotate(degrees, expand=True).getbbox()
    return (float(x0), float(y0), float(x1), float(y1))


@pytest.mark.parametrize(
    ("page_turn", "ocr_turn", "from_the_tree"),
    [(0, 0, False), (90, 0, False), (0, 90, False), (0, 180, False), (270, 270, False),
     (90, 90, False), (90, 0, True)],
)  # fmt: skip
def test_words_land_on_their_boxes_on_turned_pages_and_pages_ocr_turned(
    page_turn, ocr_turn, from_the_tree
):
    """A page with /Rotate, and a page image OCR turned upright before reading it: the layer
    still puts each word where it is printed on the page as shown (which is what pdftotext
    reports, in points of the shown page). `from_the_tree`: /Rotate and a crop box away from
    the origin inherited from the page tree, not set on the page."""
    shown = (400, 300)  # points of the page as shown; rendered at 2 px per point
    pixels = (shown[0] * 2, shown[1] * 2)
    user = shown if page_turn in (0, 180) else (shown[1], shown[0])
    pdf = pikepdf.new()
    if from_the_tree:  # a larger media box, cropped to `user` at (50, 70)
        pdf.add_blank_page(page_size=(user[0] + 120, user[1] + 150))
        pdf.Root.Pages.CropBox = [50, 70, 50 + user[0], 70 + user[1]]
        pdf.Root.Pages.Rotate = page_turn
    else:
        pdf.add_blank_page(page_size=user)
        pdf.pages[0].obj.Rotate = page_turn
    blank = io.BytesIO()
    pdf.save(blank)

    # What OCR read, upright on the image it turned `ocr_turn` degrees; where that is shown.
    upright = pixels if ocr_turn in (0, 180) else (pixels[1], pixels[0])
    words = [
        Word("Invoice", (80, 60, 300, 110), 0.9, 0),
        Word("1230.84", (60, 400, 340, 460), 0.9, 1),
    ]
    ocr = OCRResult(upright[0], upright[1], words, "test-engine", rotation=ocr_turn)
    made = searchable_pdf(one_page_document(ocr, "application/pdf"), blank.getvalue())
    back = (360 - ocr_turn) % 360
    expected = [Word(w.text, turned_box(w.box, upright, back)) for w in words]
    assert placed_share(made.data, expected, pixels, shown) == 1.0


@pytest.mark.parametrize("orientation", [6, 5])
def test_a_photo_turned_or_mirrored_by_exif_gets_its_words_where_they_are_shown(orientation):
    """EXIF orientation 6 (turned: img2pdf keeps the JPEG and sets /Rotate) and 5 (mirrored:
    img2pdf cannot, so the page as read is embedded instead): the words land on their boxes."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    render_scan((600, 200)).save(buffer, format="JPEG", exif=exif.tobytes())
    data = buffer.getvalue()
    [page] = read_document(data, "photo.jpg").pages  # upright: 200 x 600
    words = [Word("Invoice", (20, 40, 150, 80), 0.9, 0), Word("1230.84", (20, 300, 180, 340))]
    words[1].line_id = 1
    ocr = OCRResult(page.width, page.height, words, "test-engine")
    made = searchable_pdf(one_page_document(ocr, "image/jpeg"), data)
    with pikepdf.open(io.BytesIO(made.data)) as pdf:
        turn = int(pdf.pages[0].obj.get("/Rotate", 0))
        box = [float(v) for v in pdf.pages[0].mediabox]
    shown = (box[2], box[3]) if turn in (0, 180) else (box[3], box[2])
    assert placed_share(made.data, words, (page.width, page.height), shown) == 1.0
    assert (turn, page_images(made.data)[0][0]) == (
        (90, ["/DCTDecode"]) if orientation == 6 else (0, ["/FlateDecode"])
    )


# --- ALTO and hOCR ---------------------------------------------------------------------------


def test_alto_validates_against_the_v4_schema_and_gives_back_our_words_and_boxes():
    data, ocr = scanned_page()
    document = Document("s3://inbox/a&b.png", hashlib.sha256(data).hexdigest(), "image/png", [
        Page(0, ocr.width, ocr.height, None, ocr),
        Page(1, 50, 40, None, OCRResult(50, 40, [], ocr.engine)),  # a blank page
    ])  # fmt: skip
    alto = to_alto(document)
    assert validate_alto(alto) == []
    first, blank = read_alto(alto)
    assert (first.width, first.height, first.engine) == (ocr.width, ocr.height, ocr.engine)
    assert [(w.text, w.line_id) for w in first.words] == [(w.text, w.line_id) for w in ocr.words]
    for read, written in zip(first.words, ocr.words, strict=True):
        assert read.box == pytest.approx(written.box, abs=0.011)
        assert read.confidence == pytest.approx(written.confidence, abs=1e-4)
    assert blank.words == [] and (blank.width, blank.height) == (50, 40)

    # The schema is really checked: a word without its content is an error.
    broken = alto.replace(b'CONTENT="', b'XCONTENT="', 1)
    assert any("CONTENT" in error for error in validate_alto(broken))


def test_hocr_is_read_by_ocrmypdfs_parser_with_our_lines_and_words(tmp_path):
    from ocrmypdf.hocrtransform import HocrParser

    _, ocr = scanned_page()
    path = tmp_path / "page.hocr"
    path.write_bytes(to_hocr(one_page_document(ocr, "image/png")))
    page = HocrParser(path).parse()
    assert (page.bbox.right, page.bbox.bottom) == (ocr.width, ocr.height)
    lines = [[(w.text, w.bbox.left, w.bbox.top) for w in line.children] for line in page.lines]
    assert lines == [[(w.text, int(w.box[0]), int(w.box[1])) for w in line] for line in ocr.lines()]


def test_docformer_ocr_writes_each_format(tmp_path, capsys):
    """`docformer ocr --format ...` on a born-digital PDF (its text layer: no OCR to wait for)."""
    from docformer.ocr import cli

    data, _ = text_pdf([("Invoice", 72, 700), ("Total", 72, 680)])
    source = tmp_path / "digital.pdf"
    source.write_bytes(data)
    assert cli.main([str(source), "--format", "pdf", "-o", str(tmp_path / "out.pdf")]) == 0
    assert (tmp_path / "out.pdf").read_bytes() == data
    assert cli.main([str(source), "--format", "alto"]) == 0
    alto = capsys.readouterr().out.encode()
    assert validate_alto(alto) == [] and [w.text for w in read_alto(alto)[0].words] == [
        "Invoice",
        "Total",
    ]
    assert cli.main([str(source), str(source), "--format", "hocr", "-o", str(tmp_path / "h")]) == 0
    assert b"ocrx_word" in (tmp_path / "h" / "digital.pdf.hocr").read_bytes()


# --- the digitize flow -------------------------------------------------------------------------


def test_digitize_writes_records_and_never_rewrites_the_archive(
    prefect_api, docflow_env, tmp_path_factory
):
    from helpers_flows import build_random_model, put_with_ocr, query
    from test_flows import prepare_services

    from flows.archive import archive_key
    from flows.clients import object_store
    from flows.demo import best_match_archive
    from flows.digitize import digitize

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    model = build_random_model(tmp_path_factory.getbasetemp() / "random-docformerv2")
    scan, ocr = scanned_page()
    put_with_ocr(settings, "2026/scan.png", scan, [ocr])  # OCR'd by an earlier run
    digital, _ = text_pdf([("Invoice", 72, 700), ("INV-4471", 140, 700)])
    store = object_store(settings)
    store.put_bytes(settings.inbox_bucket, "2026/digital.pdf", digital)

    summary = digitize(model_version=str(model))
    assert summary["extracted"] == 2
    assert summary["archive"] | {"failed": None} == {
        "bucket": settings.archive_bucket, "written": 2, "skipped": 0, "failed": None,
    }  # fmt: skip
    assert summary["archive"]["failed"] == []

    rows = query(
        url,
        "SELECT s.key AS source, a.kind, a.bucket, a.key, a.pdfa, a.note, a.content_sha256,"
        " a.created_at FROM archive_outputs a JOIN document_sources s USING (document_id)"
        " ORDER BY s.key, a.kind",
    )
    assert [(r.source, r.kind) for r in rows] == [
        (source, kind)
        for source in ("2026/digital.pdf", "2026/scan.png")
        for kind in ("searchable_pdf", "alto", "hocr")
    ]
    by = {(r.source, r.kind): r for r in rows}
    pdf_row = by["2026/scan.png", "searchable_pdf"]
    assert pdf_row.bucket == settings.archive_bucket and pdf_row.pdfa is True
    assert pdf_row.key == archive_key(settings.inbox_bucket, "2026/scan.png", "searchable_pdf")
    assert pdf_row.key == f"{settings.inbox_bucket}/2026/scan.png.searchable.pdf"
    searchable = store.read_bytes(pdf_row.bucket, pdf_row.key, 10_000_000)
    assert hashlib.sha256(searchable).hexdigest() == pdf_row.content_sha256
    assert pdftotext(searchable, "-raw").split() == [w.text for w in ocr.words]
    alto = store.read_bytes(settings.archive_bucket, by["2026/scan.png", "alto"].key, 10_000_000)
    assert validate_alto(alto) == [] and len(read_alto(alto)[0].words) == len(ocr.words)
    digital_row = by["2026/digital.pdf", "searchable_pdf"]
    assert digital_row.pdfa is None and digital_row.note.startswith("born-digital")
    assert store.read_bytes(digital_row.bucket, digital_row.key, 10_000_000) == digital

    # What `make run` ends with: the best match of a search, and its searchable PDF.
    found = best_match_archive(settings, "INV-4471")
    assert found == ("2026/digital.pdf", f"s3://{digital_row.bucket}/{digital_row.key}", None)

    # Extracted again (a new model would do this): same content, same OCR, nothing rewritten.
    before = {r.key: store.stat(r.bucket, r.key) for r in rows}
    summary = digitize(model_version=str(model), reprocess=True)
    assert summary["extracted"] == 2
    assert (summary["archive"]["written"], summary["archive"]["skipped"]) == (0, 2)
    after = {r.key: store.stat(r.bucket, r.key) for r in rows}
    assert {k: (i.etag, i.last_modified) for k, i in after.items()} == {
        k: (i.etag, i.last_modified) for k, i in before.items()
    }
    again = query(url, "SELECT key, created_at FROM archive_outputs ORDER BY key")
    assert again == sorted((r.key, r.created_at) for r in rows)


def test_the_run_summary_says_what_was_archived():
    from flows.artifacts import digitize_markdown

    text = digitize_markdown(
        {
            "job_id": 7, "status": "completed", "documents": 3, "extracted": 3, "failed": 0,
            "pages": 3, "pages_per_minute": 12.5, "seconds": 14.0,
            "archive": {
                "bucket": "docflow-archive", "written": 1, "skipped": 1,
                "failed": [{"key": "a.pdf", "reason": "searchable_pdf: PdfError: damaged"}],
            },
        }
    )  # fmt: skip
    assert (
        "bucket `docflow-archive`): written for 1 documents, already there for 1, not written "
        "for 1: a.pdf (searchable_pdf: PdfError: damaged)." in text
    )
