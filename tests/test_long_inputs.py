"""Long inputs must cost work in proportion to their length: a single huge OCR word is cut into
a bounded number of model windows, and the PDF text-layer reader handles a very long line
without rescanning the line for each glyph. Work is counted, never timed."""

from __future__ import annotations

import ctypes
import io
import random
import string

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest
from faker import Faker

import docformer.io.pdf as pdf_reader
from docformer.document import OCRResult, Word
from docformer.models.docformerv2 import DocFormerV2Processor
from docformer.tokenization import train_tokenizer

# --- model windows --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processor() -> DocFormerV2Processor:
    faker = Faker()
    faker.seed_instance(0)
    tokenizer = train_tokenizer([faker.sentence(10) for _ in range(800)], vocab_size=300)
    return DocFormerV2Processor(tokenizer, max_text_tokens=512)


def random_word(length: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


def page_of(texts: list[str]) -> OCRResult:
    words = [Word(t, (10 + 60 * i, 10, 60 + 60 * i, 30), 1.0, 0) for i, t in enumerate(texts)]
    return OCRResult(2000, 1000, words, engine="test")


def check_spans(spans: list[tuple[int, int]], n: int, budget: int) -> None:
    """Spans cover every token in order, each non-empty and within the budget."""
    assert spans[0][0] == 0 and spans[-1][1] == n
    for (start, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert start < next_start <= end  # moves forward, no gap
    assert all(0 < end - start <= budget for start, end in spans)


def test_a_two_thousand_token_word_costs_a_handful_of_windows(processor):
    ocr = page_of(["Total", random_word(2000), "12.50"])
    tokens = processor.tokenize_page(ocr)
    assert len(tokens) >= 2000  # one token per character or so: the word alone is ~2,000 tokens
    budget = processor.ocr_budget(processor.tokenize_prompt("extract: total"))
    spans = processor.window_spans(tokens, budget)
    # Before: a window per token of the word (~1,500 windows of a few tokens each).
    assert len(spans) <= 10, len(spans)
    check_spans(spans, len(tokens), budget)
    # A cut word still grounds to itself: every token of a window keeps its word's index.
    for start, end in spans:
        assert tokens.slice(start, end).word_ids == tokens.word_ids[start:end]
    seen = {w for start, end in spans for w in tokens.word_ids[start:end]}
    assert seen == {0, 1, 2}


def test_words_nearly_as_long_as_the_window_do_not_step_one_token_at_a_time(processor):
    # Words just shorter than the budget used to make each window start one token later.
    budget = processor.ocr_budget([])
    texts = [random_word(budget - 20, seed) for seed in range(6)]
    tokens = processor.tokenize_page(page_of(texts))
    spans = processor.window_spans(tokens, budget)
    check_spans(spans, len(tokens), budget)
    stride = budget - processor.window_overlap
    assert len(spans) <= len(tokens) // stride + 4, (len(spans), len(tokens))


def test_windows_of_a_page_with_a_huge_word_are_bounded(processor):
    ocr = page_of(["Invoice", "no", random_word(2000, seed=3), "Total", "12.50"])
    batch, source_index = processor.windows([None], [ocr], prompts="extract: total")
    assert len(source_index) <= 10
    words = set(batch["word_ids"][batch["word_ids"] >= 0].tolist())
    assert words == set(range(len(ocr.words)))


# --- PDF text layer -------------------------------------------------------------------------


def one_line_pdf(text: str, font_size: float = 2.0) -> bytes:
    """A born-digital PDF page holding `text` as one Helvetica line, as wide as it needs."""
    width = 0.6 * font_size * len(text) + 40
    document = pdfium.PdfDocument.new()
    page = document.new_page(width, 60)
    obj = pdfium_c.FPDFPageObj_NewTextObj(document.raw, b"Helvetica", ctypes.c_float(font_size))
    utf16 = ctypes.create_string_buffer((text + "\0").encode("utf-16-le"))
    pdfium_c.FPDFText_SetText(obj, ctypes.cast(utf16, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
    pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, 20, 30)
    pdfium_c.FPDFPage_InsertObject(page.raw, obj)
    pdfium_c.FPDFPage_GenerateContent(page.raw)
    buffer = io.BytesIO()
    document.save(buffer)
    document.close()
    return buffer.getvalue()


def read_line(text: str, monkeypatch) -> tuple[list[Word], int]:
    """The words of a one-line PDF, and how many boxes the reader's unions went through."""
    touched = [0]
    union = pdf_reader._union

    def counting_union(items):
        items = list(items)
        touched[0] += len(items)
        return union(items)

    monkeypatch.setattr(pdf_reader, "_union", counting_union)
    document = pdfium.PdfDocument(one_line_pdf(text))
    try:
        words = pdf_reader.text_layer_words(document[0], scale=1.0)
    finally:
        document.close()
    return words, touched[0]


def test_the_band_of_a_long_line_is_not_rebuilt_for_every_glyph(monkeypatch):
    texts = [random_word(8, seed) for seed in range(600)]
    glyphs = sum(len(t) for t in texts)  # 4,800
    words, touched = read_line(" ".join(texts), monkeypatch)
    assert [w.text for w in words] == texts
    assert {w.line_id for w in words} == {words[0].line_id}
    # Each glyph's box goes through a union a bounded number of times (its word, its word's box
    # in the segment). Before, the band was the union of the whole segment so far, rebuilt for
    # every glyph: ~n²/2 boxes (about 1.5 million here).
    assert touched <= 3 * glyphs, touched


def test_a_twenty_thousand_glyph_line_reads_as_one_line_of_words(monkeypatch):
    lengths = np.arange(2_000) % 12 + 5  # words of 5 to 16 glyphs, about 21,000 in all
    texts = [random_word(int(n), seed) for seed, n in enumerate(lengths)]
    glyphs = sum(len(t) for t in texts)
    assert glyphs >= 20_000
    words, touched = read_line(" ".join(texts), monkeypatch)
    assert [w.text for w in words] == texts
    assert len({w.line_id for w in words}) == 1
    assert all(a.box[2] <= b.box[0] for a, b in zip(words, words[1:], strict=False))
    assert touched <= 3 * glyphs, touched
