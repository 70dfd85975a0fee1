"""`docformer.reader.DocumentReader`: the one path from a document's bytes to pages with OCR."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from test_reading import text_pdf

from docformer.document import OCRResult, Word, attach_ocr
from docformer.io import DocumentError
from docformer.ocr.cache import FolderOCRCache
from docformer.reader import DocumentReader


def png(size=(300, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, "PNG")
    return buffer.getvalue()


def ocr_of(width: int, height: int, rotation: int = 0, text: str = "TOTAL") -> OCRResult:
    return OCRResult(width, height, [Word(text, (5, 5, 60, 20), 0.99, 0)], rotation=rotation)


def test_supplied_ocr_turns_the_page_the_way_the_ocr_saw_it():
    # The OCR read the page turned 90 degrees: the image, the page size and the boxes agree.
    document = DocumentReader().read(png(), "scan.png", supplied_ocr=[ocr_of(200, 300, 90)])
    (page,) = document.pages
    assert page.image.size == (200, 300) and (page.width, page.height) == (200, 300)
    assert page.ocr.words[0].text == "TOTAL"


def test_supplied_ocr_for_the_wrong_number_of_pages_is_a_clear_document_error():
    with pytest.raises(DocumentError, match="2 OCR results supplied for a document of 1 pages"):
        DocumentReader().read(png(), "scan.png", supplied_ocr=[ocr_of(300, 200)] * 2)


def test_a_cached_page_is_not_read_again_and_text_layers_are_cached_too(tmp_path):
    cache = FolderOCRCache(tmp_path / "cache")
    reader = DocumentReader(cache)
    # A page image whose OCR the cache already holds: attached (and turned), no OCR run.
    data = png()
    sha256 = DocumentReader().read(data, "x.png", supplied_ocr=[ocr_of(300, 200)]).sha256
    cache.put(sha256, 0, reader.engine_id, ocr_of(200, 300, 270, "FROM-THE-CACHE"))
    (page,) = reader.read(data, "scan.png").pages
    assert page.ocr.words[0].text == "FROM-THE-CACHE" and page.image.size == (200, 300)
    assert reader.pages_ocred == 0

    # A born-digital PDF: its text layer is its OCR, and it goes into the cache, so a reader
    # that knows the page count finds every page's OCR without the file.
    pdf, _ = text_pdf([("Invoice", 72, 700), ("42.00", 72, 650)])
    document = reader.read(pdf, "invoice.pdf")
    assert document.pages[0].has_text_layer and reader.pages_ocred == 0
    cached = reader.cached_ocr(document.sha256, 1)
    assert [w.text for w in cached[0].words] == [w.text for w in document.pages[0].ocr.words]
    assert reader.cached_ocr(document.sha256, 2) is None  # one page missing: read the file


def test_attach_ocr_without_an_image_takes_the_ocr_page_size():
    from docformer.document import Page

    page = Page(index=0, width=1, height=1)
    attach_ocr(page, ocr_of(640, 480, 90))
    assert (page.width, page.height) == (640, 480) and page.image is None
