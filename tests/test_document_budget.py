"""A whole document's budget, and reading a long document one page at a time.

Pixels were limited per page only, and every page of a document was held in memory at once: a
small PDF of 200 large blank pages needed tens of GB. Now `ReadLimits.max_document_pixels`
refuses such a document from its page sizes, before any page is rendered, and
`DocumentReader.read(keep_image_size=...)` renders, OCRs and shrinks one page before it renders
the next. Rendering and decoding are counted through wrappers, never timed or measured.
"""

from __future__ import annotations

import gc
import hashlib
import io
import weakref
from collections.abc import Callable

import pypdfium2 as pdfium
import pytest
import torch
from PIL import Image, ImageFile
from test_reading import image_pdf, text_pdf

from docformer.document import OCRResult, Word
from docformer.io import DocumentError, ReadLimits, read_document
from docformer.ocr.cache import FolderOCRCache
from docformer.reader import DocumentReader

A4_PT = (595.276, 841.89)
POSTER_PT = (1440, 1440)  # 20 × 20 inches: 4000 × 4000 pixels at 200 dpi, 16 Mpx a page


def blank_pdf(pages: int, size: tuple[float, float]) -> bytes:
    """A PDF of `pages` empty pages: a few bytes a page, whatever their size."""
    pdf = pdfium.PdfDocument.new()
    for _ in range(pages):
        pdf.new_page(*size)
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


def multipage_tiff(frames: int, size: tuple[int, int]) -> bytes:
    images = [Image.new("L", size, 255) for _ in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="TIFF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


def two_page_pdf() -> bytes:
    """A born-digital PDF of two pages, each with its own words."""
    first, _ = text_pdf([("Invoice", 72, 700), ("No.", 140, 700), ("17", 172, 700)])
    second, _ = text_pdf([("Total", 72, 650), ("42.00", 140, 650)])
    pdf = pdfium.PdfDocument(first)
    pdf.import_pages(pdfium.PdfDocument(second))
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


@pytest.fixture
def renders(monkeypatch) -> list[tuple[float, float]]:
    """The size (pt) of every PDF page rendered from now on; a page over 1000 pt is not
    rendered but fails the test (it would cost 16 Mpx or more)."""
    rendered: list[tuple[float, float]] = []
    render = pdfium.PdfPage.render

    def counted(page, *args, **kwargs):
        size = page.get_size()
        rendered.append(size)
        assert max(size) < 1000, f"a {size} pt page was rendered"
        return render(page, *args, **kwargs)

    monkeypatch.setattr(pdfium.PdfPage, "render", counted)
    return rendered


class FullPages:
    """Keeps a weak reference to each full-resolution image; says how many are still alive."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref[Image.Image]] = []
        self.alive_at_each: list[int] = []  # earlier full pages alive as each new one came

    def add(self, image: Image.Image) -> None:
        self.alive_at_each.append(self.alive())
        self.refs.append(weakref.ref(image))

    def alive(self) -> int:
        gc.collect(
            0
        )  # the youngest generation: a full collection costs seconds in a big test process
        return sum(ref() is not None for ref in self.refs)


class RecordingEngine:
    """A stand-in OCR engine: one word per page, naming the pixels it was given (so two reads
    agree only when the engine saw the same image), and a record of which full pages live."""

    engine_id = "recording-engine/1"

    def __init__(self, rotation: int = 0) -> None:
        self.full_pages = FullPages()
        self.seen: list[str] = []
        self.rotation = rotation

    def read_page(self, image: Image.Image) -> OCRResult:
        self.full_pages.add(image)
        digest = hashlib.sha256(image.tobytes()).hexdigest()[:12]
        self.seen.append(digest)
        if self.rotation:
            image = image.rotate(self.rotation, expand=True)
        words = [Word(digest, (10, 10, 120, 40), 0.9, 0), Word("TOTAL", (10, 60, 90, 80), 0.9, 1)]
        return OCRResult(image.width, image.height, words, self.engine_id, rotation=self.rotation)


# --- the budget of one document ---------------------------------------------------------------


def test_a_pdf_of_two_hundred_blank_posters_is_refused_before_any_page_is_rendered(renders):
    data = blank_pdf(200, POSTER_PT)
    assert len(data) < 100_000  # tiny bytes, 3.2 billion pixels at 200 dpi
    engine = RecordingEngine()
    with pytest.raises(DocumentError) as raised:
        DocumentReader(engine=engine).read(data, "s3://inbox/posters.pdf")
    error = raised.value
    assert error.code == "too_many_pixels"
    assert error.message.startswith(
        "200 pages of 3,200,000,000 pixels in all at 200 dpi, more than the limit of "
        "800,000,000 pixels per document"
    )
    assert "split the document" in error.message and "raise the limit" in error.message
    assert renders == [] and engine.seen == []
    with pytest.raises(DocumentError, match="pixels in all"):
        read_document(data, "posters.pdf")
    assert renders == []


def test_the_default_budget_admits_two_hundred_a4_pages_at_the_ocr_dpi(renders):
    from docformer.io import open_document

    pages = open_document(blank_pdf(200, A4_PT), "a4.pdf", dpi=200)
    try:
        assert len(pages) == 200 and pages.sizes[0] == (1654, 2339)
        assert sum(w * h for w, h in pages.sizes) == 773_741_200 <= ReadLimits().max_document_pixels
    finally:
        pages.close()
    assert renders == []  # the budget was judged without rendering
    with pytest.raises(DocumentError, match="207 pages of 800,822,142 pixels in all"):
        open_document(blank_pdf(207, A4_PT), "a4.pdf", limits=ReadLimits(max_pages=300))


def test_a_tiff_whose_frames_add_up_past_the_budget_is_refused_before_any_frame_is_decoded(
    monkeypatch,
):
    decoded: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def counted(image):
        decoded.append(image.size)
        return load(image)

    data = multipage_tiff(3, (200, 100))
    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    limits = ReadLimits(max_document_pixels=50_000)
    with pytest.raises(DocumentError) as raised:
        DocumentReader(engine=RecordingEngine(), limits=limits).read(data, "scans.tif")
    assert raised.value.code == "too_many_pixels"
    assert raised.value.message.startswith(
        "3 pages of 60,000 pixels in all, more than the limit of 50,000 pixels per document"
    )
    assert decoded == []
    assert len(read_document(data, "scans.tif", limits=ReadLimits()).pages) == 3


# --- one page at a time -------------------------------------------------------------------------


def scanned_tiff(pages: int, size: tuple[int, int]) -> bytes:
    images = [Image.new("RGB", size, (255, 255 - page, 255)) for page in range(pages)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="TIFF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


LONG_SCANS = {
    "pdf": (lambda: image_pdf(pages=6, size=(300, 400)), (834, 1112)),  # pixels at 200 dpi
    "tiff": (lambda: scanned_tiff(6, (834, 1112)), (834, 1112)),
}


@pytest.mark.parametrize("kind", list(LONG_SCANS))
def test_a_long_scan_read_with_keep_image_size_holds_one_full_page_at_a_time(
    kind: str, monkeypatch
):
    make, full_size = LONG_SCANS[kind]
    data = make()
    engine = RecordingEngine()
    alive_at_render: list[int] = []  # earlier full pages alive as the next page is rendered

    def counted(render):
        def wrapped(*args, **kwargs):
            alive_at_render.append(engine.full_pages.alive())
            return render(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(pdfium.PdfPage, "render", counted(pdfium.PdfPage.render))
    monkeypatch.setattr(ImageFile.ImageFile, "load", counted(ImageFile.ImageFile.load))
    document = DocumentReader(engine=engine).read(data, "scan", keep_image_size=(256, 192))
    # As each page was rendered, and as it reached the engine, no earlier full-resolution page
    # was still held, by the reader or by the pages' generator.
    assert alive_at_render and set(alive_at_render) == {0}
    assert engine.full_pages.alive_at_each == [0] * 6
    assert engine.full_pages.alive() == 0
    for index, page in enumerate(document.pages):
        assert page.index == index and page.image.size == (192, 256)
        assert (page.width, page.height) == full_size  # the full page, the boxes' frame
        assert (page.ocr.width, page.ocr.height) == full_size

    # Read all at once (the default, unchanged), every full page is held to the end.
    everything = RecordingEngine()
    full = DocumentReader(engine=everything).read(data, "scan")
    assert everything.full_pages.alive_at_each == [0, 1, 2, 3, 4, 5]
    assert all(page.image.size == full_size for page in full.pages)
    assert everything.seen == engine.seen


def test_cached_ocr_that_turned_the_page_is_attached_before_the_page_is_shrunk(
    tmp_path, monkeypatch
):
    import docformer.io.pdf

    rendered = FullPages()
    render_page = docformer.io.pdf.render_page

    def tracked(pdf_page, scale):
        image = render_page(pdf_page, scale)
        rendered.add(image)
        return image

    monkeypatch.setattr(docformer.io.pdf, "render_page", tracked)
    data = image_pdf(pages=4, size=(300, 400))
    cache = FolderOCRCache(tmp_path / "cache")
    sha256 = hashlib.sha256(data).hexdigest()
    engine = RecordingEngine()
    for index in range(4):  # read turned a quarter, as OCR found the pages lying on their side
        cache.put(sha256, index, engine.engine_id, OCRResult(1112, 834, [], rotation=90))

    document = DocumentReader(cache, engine=engine).read(data, "x.pdf", keep_image_size=(64, 48))
    assert engine.seen == []  # every page's OCR came from the cache
    assert rendered.alive_at_each == [0, 0, 0, 0] and rendered.alive() == 0
    for page in document.pages:
        assert (page.width, page.height) == (1112, 834) and page.image.size == (48, 64)


def test_keep_no_image_keeps_only_the_ocr():
    from docformer.reader import NO_IMAGE

    engine = RecordingEngine()
    document = DocumentReader(engine=engine).read(image_pdf(3), "x.pdf", keep_image_size=NO_IMAGE)
    assert [page.image for page in document.pages] == [None, None, None]
    assert [page.ocr.words[0].text for page in document.pages] == engine.seen
    assert engine.full_pages.alive() == 0


def two_scans() -> bytes:
    from docformer.synth import render_document

    images = [render_document("receipt", 0, i).image.convert("RGB") for i in range(2)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="TIFF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


@pytest.fixture(scope="module")
def extractor():
    from docformer.extraction import Extractor

    return Extractor.from_pretrained(None, device="cpu")  # the shipped checkpoint


@pytest.mark.parametrize("make", [two_scans, two_page_pdf], ids=["two scans", "born-digital"])
def test_keep_image_size_gives_the_same_ocr_and_model_input_as_full_pages(
    make: Callable[[], bytes], extractor
):
    height, width = extractor.processor.image_size
    size = (height, width)  # what the extract task keeps of each page
    data = make()
    full_engine, kept_engine = RecordingEngine(), RecordingEngine()
    full = DocumentReader(engine=full_engine).read(data, "doc")
    kept = DocumentReader(engine=kept_engine).read(data, "doc", keep_image_size=size)

    assert len(full.pages) == len(kept.pages) == 2
    assert full_engine.seen == kept_engine.seen  # OCR saw the same full-resolution pixels
    for a, b in zip(full.pages, kept.pages, strict=True):
        assert (a.index, a.width, a.height, a.has_text_layer) == (
            b.index, b.width, b.height, b.has_text_layer
        )  # fmt: skip
        assert a.ocr == b.ocr and a.ocr.words
    processor = extractor.processor
    full_pixels = processor.pixel_values([page.image for page in full.pages])
    kept_pixels = processor.pixel_values([page.image for page in kept.pages])
    assert torch.equal(full_pixels, kept_pixels)  # the model's input, pixel for pixel
    [from_full] = extractor.extract([full])
    [from_kept] = extractor.extract([kept])
    assert {n: f.to_record() for n, f in from_full.fields.items()} == {
        n: f.to_record() for n, f in from_kept.fields.items()
    }
