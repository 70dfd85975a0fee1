"""Answer thresholds: learned per field on validation answers only when they raise its F1, kept
in the model's config, and applied by the Extractor."""

from __future__ import annotations

import pytest
import torch
from test_tagging import FIELDS, config, page, processor, tokenizer  # noqa: F401 - fixtures

from docformer.answer_thresholds import MIN_ANSWERS, learn_answer_thresholds
from docformer.extraction import Extractor
from docformer.models.docformerv2 import DocFormerV2Config, DocFormerV2ForTokenClassification


def answered(pairs: list[tuple[str | None, float]]) -> list[dict[str, tuple[str, float]]]:
    return [{"tax": (value, confidence)} if value else {} for value, confidence in pairs]


def test_a_field_many_documents_lack_drops_its_unsure_answers():
    # 30 documents with a tax line read surely and right, 30 without one where the model still
    # offers an amount, unsurely: a threshold between the two makes every answer right.
    labels = [{"tax": "1.20"}] * 30 + [{"tax": ""}] * 30
    predictions = answered([("1.20", 0.9)] * 30 + [("5.00", 0.2)] * 30)
    thresholds = learn_answer_thresholds(predictions, labels, ["tax"])
    assert 0.2 < thresholds["tax"] < 0.9


def test_no_threshold_where_dropping_answers_does_not_help():
    # Right and wrong answers at the same confidences: cutting loses as much as it gains.
    labels = [{"tax": "1.20"}] * 40
    predictions = answered([("1.20", 0.5), ("9.99", 0.5)] * 20)
    assert learn_answer_thresholds(predictions, labels, ["tax"]) == {}


def test_too_few_answers_decide_nothing():
    # The case of the first test, with one answer fewer than a decision needs.
    right, wrong = 10, MIN_ANSWERS - 1 - 10
    labels = [{"tax": "1.20"}] * right + [{"tax": ""}] * wrong
    predictions = answered([("1.20", 0.9)] * right + [("5.00", 0.2)] * wrong)
    assert learn_answer_thresholds(predictions, labels, ["tax"]) == {}


def test_the_lowest_threshold_that_reaches_the_best_f1_is_chosen():
    # Wrong answers at 0.1 and 0.2, right ones from 0.3 up: any cut between 0.2 and 0.3 is
    # best, and the one chosen keeps every right answer.
    labels = [{"tax": "1.20"}] * 40
    predictions = answered([("9.99", 0.1)] * 10 + [("9.99", 0.2)] * 10 + [("1.20", 0.3)] * 20)
    threshold = learn_answer_thresholds(predictions, labels, ["tax"])["tax"]
    assert 0.2 < threshold <= 0.25


def test_thresholds_travel_in_the_config(tmp_path, config):  # noqa: F811
    config = DocFormerV2Config.from_dict({**config.to_dict(), "answer_thresholds": {"total": 0.4}})
    config.save_pretrained(tmp_path)
    assert DocFormerV2Config.from_pretrained(tmp_path).answer_thresholds == {"total": 0.4}


@pytest.mark.parametrize(("threshold", "kept"), [(0.0, True), (1.01, False)])
def test_the_extractor_leaves_out_answers_below_their_threshold(
    config,  # noqa: F811
    processor,  # noqa: F811
    threshold,
    kept,
):
    torch.manual_seed(0)
    model = DocFormerV2ForTokenClassification(config)
    # A head that puts every word in B-company: company is always offered, with confidence < 1.
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[FIELDS.index("company") * 2 + 1] = 8.0
    model.config.answer_thresholds = {"company": threshold}
    extractor = Extractor(model, processor, name="thresholds")
    (found,) = extractor.extract_units([[(0, None, page(["ACME", "9.00"]))]])
    assert ("company" in found) is kept


def test_tagging_fine_tuning_learns_its_thresholds_on_validation(config, processor, tmp_path):  # noqa: F811
    from test_model import make_page

    from docformer.training.data import TrainingExample
    from docformer.training.tagging import finetune_tagging

    torch.manual_seed(0)
    base = tmp_path / "base"
    model = DocFormerV2ForTokenClassification(config)
    model.config.answer_thresholds = {"company": 0.99}  # the base's own: not carried over
    model.save_pretrained(base)
    processor.save_pretrained(base)
    examples = []
    for seed in range(6):
        image, ocr = make_page(seed, 12)
        fields = {"company": " ".join(w.text for w in ocr.words[:2]), "total": ocr.words[-1].text}
        examples.append(TrainingExample(f"page-{seed}", [(image, ocr)], fields))
    result = finetune_tagging(
        base, examples[:4], examples[4:], tmp_path / "out", max_steps=2, batch_size=2,
        lr=1e-3, warmup=1, eval_every=2, threads=1, log=lambda record: None,
    )  # fmt: skip
    saved = DocFormerV2Config.from_pretrained(tmp_path / "out")
    assert result.metrics["answer_thresholds"] == (saved.answer_thresholds or {})
    assert "company" not in (saved.answer_thresholds or {})  # 2 answers decide nothing
    assert result.metrics["validation_without_thresholds"]["support"] == 4
