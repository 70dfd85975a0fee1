"""Field extraction: grounding answers on OCR words, merging answers across windows and pages,
length-sorted batching, the Extractor on a small trained model, and `docformer extract`.

The model is built here: a tokenizer trained on a few synthetic receipts and a tiny DocFormerv2
trained for a few seconds until it reproduces those receipts' fields, so the end-to-end tests
check real answers, boxes and typed values rather than whatever a random network says.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path

import pytest
import torch
from faker import Faker

from docformer.checkpoints import (
    DEFAULT_MODEL_NAME,
    CheckpointNotFoundError,
    check_model_dir,
    default_model_dir,
)
from docformer.cli import main as docformer_main
from docformer.document import Document, OCRResult, Page, Word
from docformer.extraction import Extractor, ground_answer, load_extractor
from docformer.extraction_batching import length_batches, merge_answers
from docformer.extraction_results import DocumentExtraction, ExtractedField
from docformer.generation import (
    DEFAULT_FIELDS,
    FIELD_SEPARATOR,
    PageSpanConstraint,
    build_prompt,
    build_target,
)
from docformer.generation import parse_generation as parse
from docformer.models.docformerv2 import (
    DocFormerV2Config,
    DocFormerV2ForConditionalGeneration,
    DocFormerV2Processor,
)
from docformer.synth import render_document
from docformer.tokenization import train_tokenizer
from docformer.training.finetune import training_loss

torch.set_num_threads(1)

TRAINED_FIELDS = ("company", "date", "total", "currency")
N_TRAINED = 3  # receipts (kind "receipt", seed 0, index 0..2) the test model knows by heart

_built: dict[str, Path] = {}


def build_test_model(root: Path) -> Path:
    """A saved model folder (model, processor, metrics.json) that answers TRAINED_FIELDS for
    the first N_TRAINED synthetic receipts of seed 0. Built once per test process."""
    if "dir" in _built:
        return _built["dir"]
    docs = [render_document("receipt", 0, i) for i in range(N_TRAINED)]
    texts = [" ".join(w.text for w in line) for d in docs for line in d.ocr.lines()]
    texts += [f"{name}: {value}" for d in docs for name, value in d.fields.items()]
    texts += [build_prompt(DEFAULT_FIELDS)]
    tokenizer = train_tokenizer(texts, vocab_size=400)
    config = DocFormerV2Config(
        vocab_size=len(tokenizer), d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2,
        num_decoder_layers=2, image_size=[64, 48], patch_size=16, max_text_tokens=512,
        dropout_rate=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = DocFormerV2ForConditionalGeneration(config)
    processor = DocFormerV2Processor.from_config(config, tokenizer)

    batch = processor([d.image for d in docs], [d.ocr for d in docs], build_prompt(TRAINED_FIELDS))
    batch.pop("word_ids")
    targets = tokenizer(
        [build_target(d.fields, TRAINED_FIELDS) for d in docs], padding=True, return_tensors="pt"
    )
    labels = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3)
    model.train()
    for _ in range(300):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.03:
            break
    model.eval()

    directory = root / "test-model"
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    (directory / "metrics.json").write_text(
        json.dumps({"model_name": "test-tiny", "fields": list(TRAINED_FIELDS)})
    )
    _built["dir"] = directory
    return directory


def document_of(synth, source: str | None = None) -> Document:
    page = Page(0, synth.image.width, synth.image.height, synth.image, synth.ocr)
    return Document(source or synth.name, f"sha-{synth.name}", "image/png", [page])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_test_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def extractor(model_dir) -> Extractor:
    return Extractor.from_pretrained(model_dir, device="cpu")


# --- grounding ------------------------------------------------------------------------------


def ocr_page() -> OCRResult:
    lines = [
        ["ACME", "TRADlNG", "SDN", "BHD"],  # OCR read "I" as "l"
        ["NO", "12,", "JALAN", "BUKIT"],
        ["81100", "JOHOR", "BAHRU"],
        ["Date:", "25/12/2018", "10:32"],
        ["SUBTOTAL", "RM9.00"],
        ["TOTAL", "9.00"],
    ]
    words = []
    for line_id, texts in enumerate(lines):
        x = 10.0
        for text in texts:
            width = 10.0 * len(text)
            y = 20.0 + 30.0 * line_id
            words.append(Word(text, (x, y, x + width, y + 20.0), 0.99, line_id))
            x += width + 10.0
    return OCRResult(400, 300, words, engine="test")


def words_box(ocr: OCRResult, indices: list[int]) -> tuple[float, float, float, float]:
    boxes = [ocr.words[i].box for i in indices]
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def test_grounding_exact_single_word():
    ocr = ocr_page()
    found = ground_answer("25/12/2018", ocr)
    assert found.method == "exact" and found.word_indices == [12]
    assert found.box == ocr.words[12].box


def test_grounding_multi_word_answer_across_lines():
    ocr = ocr_page()
    found = ground_answer(" JALAN  BUKIT\n81100 JOHOR BAHRU ", ocr)  # whitespace does not matter
    assert found.method == "exact"
    assert found.word_indices == [6, 7, 8, 9, 10]
    assert found.box == (10.0, 50.0, 190.0, 100.0) == words_box(ocr, [6, 7, 8, 9, 10])


def test_grounding_case_insensitive_and_first_in_reading_order():
    ocr = ocr_page()
    found = ground_answer("johor bahru", ocr)
    assert found.method == "case-insensitive" and found.word_indices == [9, 10]
    # "9.00" is printed whole once (TOTAL line) and glued to "RM" once: the whole word wins.
    assert ground_answer("9.00", ocr).word_indices == [17]


def test_grounding_inside_a_word():
    ocr = ocr_page()
    ocr.words[17].text = "9.0O"
    found = ground_answer("9.00", ocr)
    assert found.method == "substring" and found.word_indices == [15]  # "RM9.00"


def test_grounding_fuzzy_match_with_an_ocr_typo():
    ocr = ocr_page()
    found = ground_answer("ACME TRADING SDN BHD", ocr)
    assert found.method == "fuzzy" and found.score >= 80
    assert found.word_indices == [0, 1, 2, 3]
    assert found.box == words_box(ocr, [0, 1, 2, 3])


def test_grounding_without_a_match():
    ocr = ocr_page()
    assert ground_answer("INV-000123", ocr) is None
    assert ground_answer("", ocr) is None
    assert ground_answer("9.50", ocr) is None  # one character in four wrong: too far
    assert ground_answer("ACME", OCRResult(10, 10, [])) is None


def test_grounding_within_a_word_range():
    ocr = ocr_page()
    assert ground_answer("JOHOR", ocr, word_range=(0, 5)) is None
    assert ground_answer("JOHOR", ocr, word_range=(5, 12)).word_indices == [9]


# --- parsing and merging across windows and pages -------------------------------------------


def test_parse_and_merge_across_windows_and_pages(model_dir):
    tokenizer = DocFormerV2Processor.from_pretrained(model_dir).tokenizer
    fields = ["company", "date", "total"]

    def generation(values: dict[str, str], prob: float) -> dict:
        ids = tokenizer(build_target(values, fields), add_special_tokens=True)["input_ids"]
        return parse(ids, [prob] * len(ids), tokenizer, fields)

    # Document 0: page 0 has two windows, page 1 one; document 1: one window.
    answers = [
        generation({"company": "ACME", "total": "1.00"}, 0.9),  # doc 0, page 0, window 0
        generation({"total": "9.00"}, 0.99),  # doc 0, page 0, window 1
        generation({"date": "25/12/2018", "total": "2.00"}, 0.95),  # doc 0, page 1
        generation({}, 0.99),  # doc 1: every field empty
    ]
    assert answers[0]["company"].value == "ACME" and answers[0]["date"].value == ""
    assert FIELD_SEPARATOR not in answers[0]["company"].value
    merged = merge_answers(answers, [0, 0, 0, 1], 2)
    assert {name: (a.value, window) for name, (a, window) in merged[0].items()} == {
        "company": ("ACME", 0),
        "total": ("9.00", 1),  # the most confident window wins, across pages too
        "date": ("25/12/2018", 2),
    }
    assert merged[1] == {}  # empty answers are never kept, however confident


# --- decoding held to the page -------------------------------------------------------------


def constraint_for(processor: DocFormerV2Processor, ocr: OCRResult, fields) -> tuple:
    batch = processor([None], [ocr], build_prompt(fields))
    return PageSpanConstraint.for_batch(processor.tokenizer, fields, batch), batch


def allowed_after(constraint: PageSpanConstraint, vocab_size: int) -> set[int]:
    probs = constraint.mask(torch.full((1, vocab_size), 0.5))
    return set(torch.nonzero(probs[0] >= 0).flatten().tolist())


def test_constraint_forces_the_names_and_keeps_values_on_the_page(model_dir):
    processor = DocFormerV2Processor.from_pretrained(model_dir)
    tokenizer, vocab_size = processor.tokenizer, len(processor.tokenizer)
    fields = ["company", "address"]
    ocr = ocr_page()
    constraint, _ = constraint_for(processor, ocr, fields)
    page_text = " ".join(w.text for w in ocr.words)
    separator = tokenizer.convert_tokens_to_ids(FIELD_SEPARATOR)
    written: list[int] = []

    def write(token: int) -> None:
        assert token in allowed_after(constraint, vocab_size)
        constraint.add(torch.tensor([token]))
        written.append(token)

    def write_value(value: str) -> None:
        value_ids = tokenizer(value, add_special_tokens=False)["input_ids"]
        for i, token in enumerate(value_ids):
            # every token allowed here keeps the value a piece of the page's text
            for candidate in allowed_after(constraint, vocab_size) - {
                separator,
                tokenizer.eos_token_id,
            }:
                assert tokenizer.decode([*value_ids[:i], candidate]).strip() in page_text
            write(token)

    # "100 JOHOR" starts inside the word "81100", and alone the tokenizer splits it otherwise
    for name, value, closer in (("company", "TRADlNG SDN", separator),
                                ("address", "100 JOHOR", tokenizer.eos_token_id)):  # fmt: skip
        name_ids = tokenizer(f"{name}:", add_special_tokens=False)["input_ids"]
        assert allowed_after(constraint, vocab_size) == {name_ids[0]}  # the name is forced
        for token in name_ids:
            write(token)
        opening = allowed_after(constraint, vocab_size)
        assert closer in opening  # a value may be empty
        off_page = set(tokenizer("ZEBRA 77", add_special_tokens=False)["input_ids"]) - set(
            tokenizer(page_text, add_special_tokens=False)["input_ids"]
        )
        assert off_page and not off_page & opening
        write_value(value)
        assert ({separator, tokenizer.eos_token_id} - {closer}).isdisjoint(
            allowed_after(constraint, vocab_size)
        )  # the separator between fields, </s> after the last
        write(closer)
    answers = parse(written, [1.0] * len(written), tokenizer, fields)
    assert {n: a.value for n, a in answers.items()} == {
        "company": "TRADlNG SDN",
        "address": "100 JOHOR",
    }
    assert allowed_after(constraint, vocab_size) == {tokenizer.eos_token_id}  # done: padding


def test_constraint_holds_dates_and_amounts_to_the_pages_own(model_dir):
    processor = DocFormerV2Processor.from_pretrained(model_dir)
    tokenizer, vocab_size = processor.tokenizer, len(processor.tokenizer)
    separator = tokenizer.convert_tokens_to_ids(FIELD_SEPARATOR)
    lone_word_start = tokenizer.convert_tokens_to_ids("▁")  # then the value's first piece
    constraint, _ = constraint_for(processor, ocr_page(), ["date", "total"])
    for token in tokenizer("date:", add_special_tokens=False)["input_ids"]:
        constraint.add(torch.tensor([token]))

    def opens_only(values: tuple[str, ...]) -> bool:
        """Whether every first piece allowed now begins one of `values`, and some does."""
        opening = allowed_after(constraint, vocab_size) - {lone_word_start}
        opening -= {separator, tokenizer.eos_token_id}
        pieces = [tokenizer.convert_ids_to_tokens(t).lstrip("▁") for t in opening]
        return bool(pieces) and all(any(v.startswith(p) for v in values) for p in pieces)

    # the page's one date, whole, or nothing; not "12/2018" of it
    assert separator in allowed_after(constraint, vocab_size)
    assert opens_only(("25/12/2018",))
    date_ids = tokenizer("25/12/2018", add_special_tokens=False)["input_ids"]
    for token in date_ids[:-1]:
        constraint.add(torch.tensor([token]))
        assert separator not in allowed_after(constraint, vocab_size)  # not half a date
    constraint.add(torch.tensor([date_ids[-1]]))
    assert allowed_after(constraint, vocab_size) == {separator}  # and not its time after it
    constraint.add(torch.tensor([separator]))
    for token in tokenizer("total:", add_special_tokens=False)["input_ids"]:
        constraint.add(torch.tensor([token]))
    assert opens_only(("RM9.00", "9.00"))  # amounts; "12," and "81100" are not


def test_constraint_along_a_target_trains_the_choice_decoding_makes(model_dir):
    processor = DocFormerV2Processor.from_pretrained(model_dir)
    tokenizer, vocab_size = processor.tokenizer, len(processor.tokenizer)
    separator, eos = tokenizer.convert_tokens_to_ids(FIELD_SEPARATOR), tokenizer.eos_token_id
    fields = ["company", "total", "date"]
    # the labelled company is not on the page (a misread): that field cannot be held to it
    values = {"company": "ZEBRA 77", "total": "9.00", "date": "25/12/2018"}
    target = [*tokenizer(build_target(values, fields), add_special_tokens=False)["input_ids"], eos]
    labels = torch.tensor([[*target, -100, -100]])
    constraint, batch = constraint_for(processor, ocr_page(), fields)
    allowed = constraint.allowed_along(labels, vocab_size)[0]
    assert allowed[torch.arange(len(target)), target].all()  # every label may be chosen

    closers = [i for i, token in enumerate(target) if token in (separator, eos)]
    starts = [0, *(i + 1 for i in closers[:-1])]
    counts = allowed.sum(-1).tolist()
    for name, start, closer in zip(fields, starts, closers, strict=True):
        name_length = len(tokenizer(f"{name}:", add_special_tokens=False)["input_ids"])
        assert counts[start : start + name_length] == [1] * name_length  # names are forced
        value = range(start + name_length, closer + 1)
        if name == "company":  # from the token that leaves the page to its closer: any token
            left = next(i for i in value if counts[i] == vocab_size)
            assert all(counts[i] == vocab_size for i in range(left, closer + 1))
        else:
            assert all(1 <= counts[i] < vocab_size for i in value)  # held to the page again
    first_total_piece = starts[1] + len(tokenizer("total:", add_special_tokens=False)["input_ids"])
    pieces = [tokenizer.convert_ids_to_tokens(t).lstrip("▁")
              for t in torch.nonzero(allowed[first_total_piece]).flatten().tolist()
              if t not in (separator, tokenizer.convert_tokens_to_ids("▁"))]  # fmt: skip
    assert pieces and all("RM9.00".startswith(p) or "9.00".startswith(p) for p in pieces)
    assert counts[closers[-1]] == 1  # after the whole date only the end
    assert allowed[len(target) :].all()  # padding is not held to anything

    # the page objective normalises over those tokens: never a larger loss than the vocabulary's
    torch.manual_seed(0)
    model = DocFormerV2ForConditionalGeneration(DocFormerV2Config.from_pretrained(model_dir))
    batch = {**batch, "labels": labels}
    page = training_loss(model, processor, fields, batch, "page")
    vocabulary = training_loss(model, processor, fields, batch, "vocabulary")
    assert torch.isfinite(page) and 0 < page < vocabulary


def test_constrained_generation_writes_every_field_as_a_span_of_the_page(model_dir):
    processor = DocFormerV2Processor.from_pretrained(model_dir)
    torch.manual_seed(1)  # an untrained model: its choices are arbitrary, the format is not
    model = DocFormerV2ForConditionalGeneration(DocFormerV2Config.from_pretrained(model_dir)).eval()
    ocr, fields = long_page(12), list(DEFAULT_FIELDS)
    constraint, batch = constraint_for(processor, ocr, fields)
    generation = model.generate_answers(**batch, max_new_tokens=400, constraint=constraint)
    length = generation.lengths[0]
    ids = generation.sequences[0, :length].tolist()
    assert ids[-1] == processor.tokenizer.eos_token_id  # every field written, then the end
    answers = parse(ids, generation.token_probs[0, :length].tolist(), processor.tokenizer, fields)
    text = " ".join(w.text for w in ocr.words)
    assert list(answers) == fields
    for answer in answers.values():
        assert answer.value in text
        assert 0.0 <= answer.confidence <= 1.0
    assert any(answer.value for answer in answers.values())


# --- batching -------------------------------------------------------------------------------


def test_length_batches_cover_every_row_within_the_budget():
    rng = random.Random(0)
    lengths = [rng.randrange(40, 600) for _ in range(200)] + [5000]
    batches = length_batches(lengths, 2048)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) * longest <= 2048 or len(batch) == 1
    assert [lengths[i] for i in batches[0]] == [5000]  # too long for the budget: alone
    assert length_batches([], 100) == []


def long_page(n_words: int) -> OCRResult:
    faker = Faker()
    faker.seed_instance(3)
    words, x, y, line = [], 10, 10, 0
    for text in faker.words(n_words):
        if x > 700:
            x, y, line = 10, y + 20, line + 1
        words.append(Word(text, (x, y, x + 8 * len(text), y + 14), 1.0, line))
        x += 8 * len(text) + 6
    return OCRResult(800, max(1000, y + 30), words, engine="test")


def test_dynamic_batching_keeps_order_and_covers_every_window(extractor):
    synth = [render_document("receipt", 0, i) for i in range(N_TRAINED)]
    units = [[(0, s.image, s.ocr)] for s in synth] + [
        [(0, None, long_page(700)), (1, None, long_page(40))]
    ]
    windows = extractor.plan_windows(units)
    assert [w.unit for w in windows].count(3) >= 3  # the long page does not fit one window
    long_windows = [w for w in windows if w.unit == 3 and w.page == 0]
    assert long_windows[0].word_range[0] == 0 and long_windows[-1].word_range[1] == 700
    for before, after in zip(long_windows, long_windows[1:], strict=False):
        assert after.word_range[0] < before.word_range[1]  # windows overlap, no word is lost

    budget = extractor.max_batch_tokens
    try:
        extractor.max_batch_tokens = 1  # one window per batch
        one_by_one = extractor.answer_windows(units, windows)
        extractor.max_batch_tokens = 10**6  # everything in one padded batch
        all_at_once = extractor.answer_windows(units, windows)
    finally:
        extractor.max_batch_tokens = budget
    assert len(one_by_one) == len(all_at_once) == len(windows)
    for single, batched in zip(one_by_one, all_at_once, strict=True):
        assert {n: a.value for n, a in single.items()} == {n: a.value for n, a in batched.items()}
        for name in single:
            assert single[name].confidence == pytest.approx(batched[name].confidence, abs=1e-4)
    # Answers went back to their own windows: each trained receipt gets its own company.
    for i, s in enumerate(synth):
        assert all_at_once[i]["company"].value == s.fields["company"]


# --- the extractor --------------------------------------------------------------------------


def test_extract_reads_grounds_and_normalises(extractor):
    assert extractor.name == "test-tiny" and extractor.fields == TRAINED_FIELDS
    synth = [render_document("receipt", 0, i) for i in range(N_TRAINED)]
    results = extractor.extract([document_of(s) for s in synth])
    assert [r.source for r in results] == [s.name for s in synth]  # order preserved
    for s, result in zip(synth, results, strict=True):
        assert isinstance(result, DocumentExtraction) and result.pages == 1
        assert result.model == "test-tiny" and result.seconds >= 0
        assert list(result.fields) == [f for f in TRAINED_FIELDS if s.fields.get(f)]
        for name, extracted in result.fields.items():
            assert extracted.value == s.fields[name]
            assert 0.0 < extracted.confidence <= 1.0
        company = result.fields["company"]
        n = len(company.value.split())
        texts = [w.text for w in s.ocr.words]
        start = next(i for i in range(len(texts)) if texts[i : i + n] == company.value.split())
        assert company.page == 0 and company.word_indices == list(range(start, start + n))
        assert company.box == words_box(s.ocr, company.word_indices)

        total = result.fields["total"]
        assert total.value_num == Decimal(s.fields["total"]) and total.currency == "MYR"
        assert result.fields["currency"].currency == "MYR"  # "RM" as printed
        assert result.fields["date"].value_date is not None

        record = company.to_record()
        assert set(record) == {"name", "value", "raw_value", "value_num", "value_date",
                               "currency", "confidence", "page", "box"}  # fmt: skip
        json.dumps(result.to_dict())  # JSON-safe


def test_extract_handles_pages_without_words_and_many_pages(extractor):
    synth = render_document("receipt", 0, 1)
    blank = Page(0, 100, 100, None, OCRResult(100, 100, []))
    unread = Page(1, 100, 100, None, None)
    receipt = Page(2, synth.image.width, synth.image.height, synth.image, synth.ocr)
    document = Document("three-pages", "sha", "application/pdf", [blank, unread, receipt])
    empty = Document("empty", "sha", "image/png", [])
    results = extractor.extract([document, empty])
    assert results[0].pages == 3 and results[0].fields["company"].page == 2
    assert results[0].fields["total"].value == synth.fields["total"]
    assert results[1].fields == {}
    pages = extractor.extract_pages([(synth.image, synth.ocr)])
    assert pages[0]["company"].value == synth.fields["company"] and pages[0]["company"].page == 0


def test_field_serialisation():
    extracted = ExtractedField(
        "total", "RM 9.00", 0.5, Decimal("9.00"), None, "MYR", 0, (1.0, 2.0, 3.0, 4.0), [3]
    )
    assert extracted.to_dict()["value_num"] == "9.00"
    assert extracted.to_record()["box"] == [1.0, 2.0, 3.0, 4.0]
    assert extracted.to_record()["value_num"] == Decimal("9.00")


def test_load_extractor_is_cached_per_folder_and_device(model_dir):
    first = load_extractor(model_dir, device="cpu")
    assert load_extractor(str(model_dir), device="cpu") is first
    assert first.fields == TRAINED_FIELDS


def test_checkpoint_paths(tmp_path):
    assert default_model_dir().name == "receipts-tiny"
    assert default_model_dir().parent.name == "checkpoints"
    assert DEFAULT_MODEL_NAME == "docformerv2-receipts-tiny"
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        check_model_dir(tmp_path / "nowhere")
    with pytest.raises(CheckpointNotFoundError, match="config.json"):
        check_model_dir(tmp_path)


# --- the command ----------------------------------------------------------------------------


@pytest.mark.slow
def test_extract_command_on_a_png_and_a_broken_file(model_dir, tmp_path, capsys):
    """Real OCR (PaddleOCR) on a generated receipt saved as PNG; a broken file in between."""
    synth = render_document("receipt", 0, 0)
    good = tmp_path / "receipt.png"
    synth.image.save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not an image at all")
    status = docformer_main(
        ["extract", "--model", str(model_dir), "--device", "cpu", str(broken), str(good)]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 1
    assert len(lines) == 2
    error, result = (json.loads(line) for line in lines)
    assert error["source"] == str(broken)
    assert error["error"]["code"] == "unsupported_format" and error["error"]["message"]
    assert result["source"] == str(good) and result["pages"] == 1
    assert result["model"] == "test-tiny" and len(result["sha256"]) == 64
    assert isinstance(result["fields"], dict)
    for name, extracted in result["fields"].items():
        assert name in TRAINED_FIELDS and extracted["name"] == name
        assert set(extracted) >= {"value", "confidence", "value_num", "value_date", "currency",
                                  "page", "box", "word_indices"}  # fmt: skip


def test_extract_command_pretty_and_model_errors(model_dir, tmp_path, capsys):
    missing = tmp_path / "missing.pdf"
    status = docformer_main(["extract", "--model", str(model_dir), "--pretty", str(missing)])
    out = capsys.readouterr().out
    assert status == 1 and out.startswith("{\n")
    assert json.loads(out)["error"]["code"] == "not_found"
    assert docformer_main(["extract", "--model", str(tmp_path / "none"), str(missing)]) == 2
    assert "cannot load the model" in capsys.readouterr().err
