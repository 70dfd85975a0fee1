"""The word-tagging head: the model classes' save/load, BIO targets and decoding, window
merging, typed values, and that the head learns a handful of generated pages through the same
Extractor that ships."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from faker import Faker
from test_model import make_page

from docformer.document import OCRResult, Word
from docformer.extraction import Extractor, load_model
from docformer.models.docformerv2 import (
    DocFormerV2Config,
    DocFormerV2ForConditionalGeneration,
    DocFormerV2ForTokenClassification,
    DocFormerV2Model,
    DocFormerV2Processor,
)
from docformer.tagging import (
    IGNORE_INDEX,
    WordTagMerger,
    decode_spans,
    span_value,
    tag_windows,
    word_tags,
)
from docformer.tokenization import train_tokenizer

torch.set_num_threads(1)
FIELDS = ["company", "total"]


@pytest.fixture(scope="module")
def tokenizer():
    faker = Faker()
    faker.seed_instance(0)
    return train_tokenizer([faker.sentence(10) for _ in range(800)], vocab_size=300)


@pytest.fixture(scope="module")
def config(tokenizer) -> DocFormerV2Config:
    return DocFormerV2Config(
        vocab_size=len(tokenizer), d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2,
        num_decoder_layers=2, image_size=[96, 64], patch_size=32, max_text_tokens=64,
        dropout_rate=0.0, tagging_fields=FIELDS,
    )  # fmt: skip


@pytest.fixture(scope="module")
def processor(config, tokenizer) -> DocFormerV2Processor:
    return DocFormerV2Processor.from_config(config, tokenizer, window_overlap=8)


def page(texts: list[str]) -> OCRResult:
    words = [Word(t, (10 + 40 * i, 10, 40 + 40 * i, 30), 1.0, 0) for i, t in enumerate(texts)]
    return OCRResult(1000, 100, words, engine="test")


# --- the model classes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_class",
    [DocFormerV2Model, DocFormerV2ForTokenClassification, DocFormerV2ForConditionalGeneration],
)
def test_each_class_saves_and_loads_identically(model_class, config, processor, tmp_path):
    torch.manual_seed(0)
    model = model_class(config).eval()
    image, ocr = make_page(3, 30)
    batch = processor([image], [ocr])
    model.save_pretrained(tmp_path)
    reloaded, info = model_class.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    reloaded.eval()
    with torch.no_grad():
        if model_class is DocFormerV2ForConditionalGeneration:
            a, b = (
                model(**batch).encoder_last_hidden_state,
                reloaded(**batch).encoder_last_hidden_state,
            )
        elif model_class is DocFormerV2Model:
            a, b = model(**batch).last_hidden_state, reloaded(**batch).last_hidden_state
        else:
            a, b = model(**batch).logits, reloaded(**batch).logits
    assert torch.equal(a, b)


def test_a_tagger_takes_the_encoder_of_a_generation_checkpoint_and_leaves_its_decoder(
    config, tmp_path
):
    generation_config = DocFormerV2Config(**{**config.to_dict(), "tagging_fields": None})
    torch.manual_seed(1)
    generator = DocFormerV2ForConditionalGeneration(generation_config)
    generator.save_pretrained(tmp_path / "generator")
    tagger = DocFormerV2ForTokenClassification.from_pretrained(
        tmp_path / "generator", config=config
    )
    assert torch.equal(tagger.encoder.block[0].layer[0].SelfAttention.q.weight,
                       generator.encoder.block[0].layer[0].SelfAttention.q.weight)  # fmt: skip
    assert not hasattr(tagger, "decoder") and not hasattr(tagger, "line_head")
    tagger.save_pretrained(tmp_path / "tagger")
    assert isinstance(load_model(tmp_path / "tagger"), DocFormerV2ForTokenClassification)
    assert isinstance(load_model(tmp_path / "generator"), DocFormerV2ForConditionalGeneration)
    assert config.tag_names == ["O", "B-company", "I-company", "B-total", "I-total"]


def test_a_narrower_schema_keeps_the_head_rows_of_the_fields_it_shares(config, tmp_path):
    from docformer.training.tagging import tagging_model

    torch.manual_seed(2)
    DocFormerV2ForTokenClassification(config).save_pretrained(tmp_path / "two-fields")
    old = DocFormerV2ForTokenClassification.from_pretrained(tmp_path / "two-fields")
    narrower = tagging_model(tmp_path / "two-fields", ["total", "date"])
    assert narrower.config.tag_names == ["O", "B-total", "I-total", "B-date", "I-date"]
    for new_row, old_row in ((0, 0), (1, 3), (2, 4)):  # O, B-total, I-total
        assert torch.equal(narrower.classifier.weight[new_row], old.classifier.weight[old_row])
        assert torch.equal(narrower.classifier.bias[new_row], old.classifier.bias[old_row])
    same = tagging_model(tmp_path / "two-fields", None)
    assert torch.equal(same.classifier.weight, old.classifier.weight)


# --- targets, windows, decoding ---------------------------------------------------------------


def test_word_tags_mark_a_run_begin_then_inside():
    assert word_tags(6, {"company": [1, 2], "total": [5]}, FIELDS) == [0, 1, 2, 0, 0, 3]


def test_tag_targets_sit_on_each_words_first_token_only(processor):
    ocr = page(["Supercalifragilistic", "TOTAL", "9.00"])
    tags = word_tags(3, {"total": [2]}, FIELDS)
    (window,) = tag_windows(processor, ocr, tags)
    first = {position for position, _ in window.first_tokens}
    assert [w for _, w in window.first_tokens] == [0, 1, 2]
    for position, target in enumerate(window.token_tags):
        assert (target != IGNORE_INDEX) == (position in first)
    assert [window.token_tags[p] for p in sorted(first)] == [0, 0, 3]


def test_windows_merge_word_tags_across_a_boundary(processor, config):
    _, ocr = make_page(11, 120)
    windows = tag_windows(processor, ocr)
    assert len(windows) >= 3
    merger = WordTagMerger(len(ocr.words), len(config.tag_names))
    # Each window votes for a tag of its own, so the merged tag says which window decided.
    for index, window in enumerate(windows):
        probs = np.zeros((len(window.row.input_ids), len(config.tag_names)), dtype=np.float32)
        probs[:, index % len(config.tag_names)] = 1.0
        merger.add(window, probs)
    assert not np.isnan(merger.probs).any(), "every word is tagged by some window"
    for word in range(len(ocr.words)):
        # the deciding window is the one where the word sits farthest from an edge
        margins = [
            (min(p, w.n_tokens - 1 - p), i)
            for i, w in enumerate(windows)
            for p, wd in w.first_tokens
            if wd == word
        ]
        best = max(margins, key=lambda m: m[0])[1]
        assert merger.probs[word].argmax() == best % len(config.tag_names)


def test_a_value_printed_twice_is_tagged_at_one_copy_and_counted(processor):
    from docformer.training.data import TrainingExample
    from docformer.training.tagging import build_tagging_rows

    # The total 9.00 printed after SUBTOTAL and after TOTAL: one copy is the field, the other
    # O like every other word; the report counts the value as printed more than once.
    ocr = page(["SUBTOTAL", "9.00", "TOTAL", "9.00", "CASH", "10.00"])
    example = TrainingExample("receipt", [(None, ocr)], {"total": "9.00"})
    rows, report = build_tagging_rows(processor, [example], FIELDS)
    (row,) = rows
    tags = {word: row.window.token_tags[position] for position, word in row.window.first_tokens}
    begin_total = 3  # O, B-company, I-company, B-total, I-total
    assert sorted(tags[w] for w in (1, 3)) == [0, begin_total]
    assert [tags[w] for w in (0, 2, 4, 5)] == [0, 0, 0, 0]
    assert report["total"]["printed_more_than_once"] == 1


def tag_probs(tags: list[int], sure: float = 0.9, n_tags: int = 5) -> np.ndarray:
    probs = np.full((len(tags), n_tags), (1 - sure) / (n_tags - 1), dtype=np.float32)
    probs[np.arange(len(tags)), tags] = sure
    return probs


@pytest.mark.parametrize(
    "tags, expected",
    [
        ([0, 1, 2, 0, 3], {"company": (1, 2), "total": (4,)}),
        # a word marked B after a run continues it: a tagger hesitating between B and I on a
        # company name's second word must not cut the name there
        ([1, 2, 1, 2], {"company": (0, 1, 2, 3)}),
        ([0, 2, 2, 0], {"company": (1, 2)}),  # a run the model opens with I is still a run
        ([1, 3, 0], {"company": (0,), "total": (1,)}),  # another field's tag ends it
        ([0, 0, 0], {}),  # no word 0.1 likely in a field: nothing answered
    ],
)
def test_decode_spans_reads_the_best_run_of_each_field(tags, expected):
    spans = decode_spans(tag_probs(tags), FIELDS)
    assert {name: span.word_indices for name, span in spans.items()} == expected


def test_a_doubtful_word_inside_a_sure_run_stays_in():
    # An address's postcode the model doubts (I 0.3, O 0.6) between words it is sure of: the
    # argmax reads two runs and keeps one piece; the best run keeps all five words.
    probs = tag_probs([1, 2, 0, 2, 2], sure=0.96)
    probs[2] = [0.6, 0.05, 0.3, 0.025, 0.025]
    assert decode_spans(probs, FIELDS)["company"].word_indices == (0, 1, 2, 3, 4)
    # A word the model is sure is outside (O 0.96) is crossed only for more than it costs: not
    # for one unsure word after it (I 0.6).
    probs = tag_probs([1, 2, 0, 2], sure=0.96)
    probs[3] = [0.35, 0.025, 0.6, 0.0125, 0.0125]
    assert decode_spans(probs, FIELDS)["company"].word_indices == (0, 1)


def test_a_field_o_wins_everywhere_is_offered_where_it_is_likeliest():
    # O wins on every word, but word 2 is 0.325 likely in a total (B 0.3, I 0.025) and word 3
    # only 0.2 likely to continue it: the total is offered at word 2 alone, as sure as that.
    probs = tag_probs([0, 0, 0, 0, 0], sure=0.9)  # every other tag 0.025
    probs[1] = [0.8, 0.05, 0.0, 0.15, 0.0]
    probs[2] = [0.675, 0.0, 0.0, 0.3, 0.025]
    probs[3] = [0.8, 0.0, 0.0, 0.0, 0.2]
    total = decode_spans(probs, FIELDS)["total"]
    assert total.word_indices == (2,)
    assert math.isclose(total.confidence, 0.325 * (1 - 0.2), rel_tol=1e-5)
    assert "company" not in decode_spans(probs, FIELDS)  # 0.05 at best: not offered
    assert "total" not in decode_spans(probs, FIELDS, min_start=0.35)


def test_a_typed_field_is_read_only_from_a_run_that_holds_its_type():
    # The model leans to "19.00" and the clock time for the date; the date printed below them
    # is the only run that holds a date, so it is the answer, however unsure.
    texts = ["Date", "19.00", "21:13", "12-01-19", "Total", "RM", "33.90"]
    ocr = OCRResult(
        400, 300, [Word(text, (10 * i, 10, 10 * i + 9, 20), 1.0, 0) for i, text in enumerate(texts)]
    )
    date_fields = ["date", "total"]
    probs = tag_probs([0, 1, 1, 0, 0, 0, 3], sure=0.7)
    probs[3] = [0.75, 0.2, 0.0125, 0.025, 0.0125]
    spans = decode_spans(probs, date_fields, ocr)
    assert spans["date"].word_indices == (3,)
    assert spans["total"].word_indices == (6,)
    # without the OCR, the run the model leans to
    assert decode_spans(probs, date_fields)["date"].word_indices == (1, 2)


def test_a_typed_value_printed_twice_pools_its_copies():
    # The model gives CASH 10.00 0.6 and each copy of the total 9.00 (TOTAL, ROUNDED) 0.45:
    # 9.00 is the field with probability about 1 - 0.56 * 0.56 = 0.69 under independent copies, so
    # it is answered, at its surer copy (the first of two equals), with that confidence (each
    # copy's exact-span probability: in the field, and the next word, I 0.025, not continuing).
    texts = ["TOTAL", "9.00", "ROUNDED", "9.00", "CASH", "10.00"]
    ocr = OCRResult(
        400,
        300,
        [Word(text, (10 * i, 10, 10 * i + 9, 20), 1.0, i // 2) for i, text in enumerate(texts)],
    )
    probs = tag_probs([0, 0, 0, 0, 0, 0], sure=0.9)
    for word, p_total in ((1, 0.45), (3, 0.45), (5, 0.6)):
        probs[word] = [1 - p_total, 0.0, 0.0, p_total, 0.0]
    total = decode_spans(probs, FIELDS, ocr)["total"]
    assert total.word_indices == (1,)
    copy = 0.45 * (1 - 0.025)
    assert math.isclose(total.confidence, 1 - (1 - copy) ** 2, rel_tol=1e-5)
    # printed once, the surer amount wins as before
    probs[3] = [0.9, 0.0, 0.0, 0.1, 0.0]
    assert decode_spans(probs, FIELDS, ocr)["total"].word_indices == (5,)


def test_span_confidence_is_the_probability_of_exactly_that_span():
    probs = tag_probs([0, 1, 2, 0], sure=0.9)
    span = decode_spans(probs, FIELDS)["company"]
    # the first word in the field (B 0.9 + I 0.025), the second in it too (I 0.9 + B 0.025),
    # and the next word not in it (1 - 0.05)
    assert math.isclose(span.confidence, 0.925 * 0.925 * (1 - 0.05), rel_tol=1e-5)
    longer = decode_spans(tag_probs([1, 2, 2, 2, 2]), FIELDS)["company"]
    assert longer.confidence < span.confidence


def test_unseen_and_blank_words_neither_open_nor_close_a_span():
    probs = tag_probs([1, 0, 2])
    probs[1] = np.nan  # no window saw it
    assert decode_spans(probs, FIELDS)["company"].word_indices == (0, 2)


@pytest.mark.parametrize(
    "name, printed, value",
    [
        ("total", "RM9.00", "9.00"),
        ("total", "9.00", "9.00"),
        ("total", "Total: RM 12.50", "12.50"),
        ("date", "Date:12-01-19", "12-01-19"),
        ("company", "ABC SDN BHD", "ABC SDN BHD"),
    ],
)
def test_a_typed_value_is_cut_from_its_tagged_words(name, printed, value):
    assert span_value(name, printed) == value


# --- learning ---------------------------------------------------------------------------------


def test_rare_tags_weigh_more_in_the_loss_up_to_a_cap():
    """O weighs 1; a tag 4x rarer weighs 2; one 400x rarer or never seen weighs the cap."""
    from types import SimpleNamespace

    from docformer.training.tagging import MAX_TAG_WEIGHT, TaggingRow, tag_loss_weights

    tags = [0] * 400 + [1] * 100 + [2] + [-100] * 50
    rows = [TaggingRow(SimpleNamespace(token_tags=tags[i::3]), None) for i in range(3)]
    weights = tag_loss_weights(rows, 4).tolist()
    assert weights == pytest.approx([1.0, 2.0, MAX_TAG_WEIGHT, MAX_TAG_WEIGHT])


def test_the_weighted_tag_loss_ignores_untagged_tokens_and_is_zero_without_any():
    from docformer.training.tagging import tagging_loss

    logits = torch.zeros(1, 3, 2, requires_grad=True)
    labels = torch.tensor([[1, -100, -100]])
    weighted = tagging_loss(logits, labels, torch.tensor([1.0, 5.0]))
    assert weighted.item() == pytest.approx(math.log(2))  # one word, uniform logits
    empty = tagging_loss(logits, torch.full((1, 3), -100), None)
    empty.backward()
    assert empty.item() == 0.0 and logits.grad is not None


@pytest.mark.slow
def test_tagging_head_learns_eight_generated_pages_through_the_extractor(tmp_path):
    """Eight generated receipts: fine-tuning the shipped checkpoint's encoder under a new
    tagging head reaches F1 1.0 on them in 40 steps, scored through the Extractor that ships."""
    from docformer.checkpoints import default_model_dir
    from docformer.synth import render_document
    from docformer.training.data import TrainingExample, shrink_image
    from docformer.training.finetune import evaluate_model
    from docformer.training.tagging import finetune_tagging

    fields = ["date", "total"]
    examples = []
    for index in range(8):
        document = render_document("receipt", seed=77, index=index)
        examples.append(
            TrainingExample(
                document.name,
                [(shrink_image(document.image, (256, 192)), document.ocr)],
                {name: document.fields[name] for name in fields},
            )
        )
    result = finetune_tagging(
        default_model_dir(), examples, [], tmp_path / "tagger", fields=fields,
        epochs=1000, max_steps=40, batch_size=8, lr=2e-3, warmup=10, eval_every=40, threads=1,
        log=lambda record: None,
    )  # fmt: skip
    assert result.metrics["alignment"]["total"]["aligned"] == 8
    model = load_model(tmp_path / "tagger")
    assert isinstance(model, DocFormerV2ForTokenClassification)
    processor = DocFormerV2Processor.from_pretrained(tmp_path / "tagger")
    scores = evaluate_model(model, examples, fields, processor=processor)
    assert scores["overall"]["f1"] == 1.0, scores["fields"]
    extractor = Extractor(model, processor, name="tagger")
    units = [[(0, image, ocr) for image, ocr in examples[0].pages]]
    (found,) = extractor.extract_units(units)
    assert found["total"].box is not None and found["total"].page == 0
    assert found["total"].value == examples[0].fields["total"]


class Interrupted(Exception):
    pass


def test_an_interrupted_tagging_run_resumes_to_the_same_weights(config, processor, tmp_path):
    """Stopped after its first evaluation and resumed, a run ends with the weights an
    uninterrupted run ends with (dropout is off, so every step is deterministic)."""
    from safetensors.torch import load_file

    from docformer.training.data import TrainingExample
    from docformer.training.tagging import finetune_tagging

    torch.manual_seed(0)
    base = tmp_path / "base"
    DocFormerV2ForTokenClassification(config).save_pretrained(base)
    processor.save_pretrained(base)
    examples = []
    for seed in range(4):
        image, ocr = make_page(seed, 12)
        fields = {"company": " ".join(w.text for w in ocr.words[:2]), "total": ocr.words[-1].text}
        examples.append(TrainingExample(f"page-{seed}", [(image, ocr)], fields))
    settings = dict(
        epochs=100, max_steps=6, batch_size=2, lr=1e-3, warmup=1, eval_every=2, patience=10,
        threads=1,
    )  # fmt: skip

    whole = finetune_tagging(base, examples, [], tmp_path / "whole", log=lambda r: None, **settings)

    def stop_at_step_four(record):
        if record.get("step") == 4:  # logged before step 4 is evaluated and saved
            raise Interrupted

    with pytest.raises(Interrupted):
        finetune_tagging(
            base, examples, [], tmp_path / "resumed", log=stop_at_step_four, **settings
        )
    assert (tmp_path / "resumed" / "training_state.pt").is_file()
    resumed = finetune_tagging(
        base, examples, [], tmp_path / "resumed", resume=True, log=lambda r: None, **settings
    )
    assert resumed.steps == whole.steps == 6
    assert not (tmp_path / "resumed" / "training_state.pt").exists()
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
