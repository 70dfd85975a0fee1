"""Evaluation: scores and the reliability table wired to real extractions, documents that fail,
the OCR cache, and `docformer eval` (JSON and table)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_extraction import N_TRAINED, TRAINED_FIELDS, build_test_model

from docformer.cli import main as docformer_main
from docformer.evaluation import evaluate, load_example
from docformer.extraction import Extractor
from docformer.labelled import iter_labelled_folder
from docformer.ocr.cache import FolderOCRCache
from docformer.reader import DocumentReader
from docformer.synth import generate
from docformer.training.data import split_examples

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_test_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def extractor(model_dir) -> Extractor:
    return Extractor.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory) -> Path:
    """The receipts the test model was trained on, one unknown receipt, and a broken file."""
    folder = tmp_path_factory.mktemp("labelled")
    generate("receipt", n=N_TRAINED + 1, seed=0, out_dir=folder)
    (folder / "zz_broken.png").write_bytes(b"<html>login page</html>")
    (folder / "zz_broken.json").write_text(json.dumps({"company": "X", "total": "1.00"}))
    return folder


def labelled_count(examples, fields) -> int:
    return sum(1 for e in examples for name in fields if e.fields.get(name))


def test_evaluate_wires_scores_reliability_and_failures(extractor, labelled_folder):
    examples = list(iter_labelled_folder(labelled_folder))
    report = evaluate(extractor, examples, batch_documents=2)
    assert report.model == "test-tiny" and report.fields == list(TRAINED_FIELDS)
    assert report.documents == len(examples) == N_TRAINED + 2
    assert report.pages == N_TRAINED + 1  # the broken file has no pages
    assert [e["name"] for e in report.errors] == ["zz_broken"]
    assert report.errors[0]["code"] == "unsupported_format"

    overall = report.scores["overall"]
    assert set(report.scores) == {*TRAINED_FIELDS, "overall"}
    assert overall.support == labelled_count(examples, TRAINED_FIELDS)
    assert overall.support == sum(report.scores[f].support for f in TRAINED_FIELDS)
    # The trained receipts are read back exactly; the broken one predicts nothing.
    for i in range(N_TRAINED):
        for name in TRAINED_FIELDS:
            assert report.predictions[i].get(name) == examples[i].fields.get(name)
    assert report.predictions[-1] == {}
    assert report.scores["company"].true_positives >= N_TRAINED
    assert report.scores["company"].false_negatives >= 1  # the broken document's label
    assert 0 < overall.f1 <= 1 and 0 < overall.anls <= 1

    # Reliability: one entry per non-empty prediction, correct ones counted as such.
    predicted = sum(len(p) for p in report.predictions)
    assert sum(b.count for b in report.reliability) == predicted
    assert sum(b.correct for b in report.reliability) >= N_TRAINED * len(TRAINED_FIELDS)
    assert report.seconds >= report.extract_seconds > 0
    assert report.seconds_per_page > 0


def test_evaluate_only_the_fields_asked(extractor, labelled_folder):
    examples = list(iter_labelled_folder(labelled_folder))[:N_TRAINED]
    report = evaluate(extractor, examples, fields=["total"])
    assert set(report.scores) == {"total", "overall"}
    assert report.scores["total"].f1 == 1.0
    with pytest.raises(ValueError, match="not extracted"):
        evaluate(extractor, examples, fields=["address"])


def test_eval_command_json(model_dir, labelled_folder, capsys):
    status = docformer_main(
        ["eval", "--model", str(model_dir), "--data", str(labelled_folder), "--json",
         "--limit", str(N_TRAINED), "--device", "cpu"]
    )  # fmt: skip
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {
        "model", "fields", "documents", "pages", "failed", "scores", "reliability", "seconds",
        "extract_seconds", "seconds_per_page", "extract_seconds_per_page", "errors",
    }  # fmt: skip
    assert report["documents"] == N_TRAINED and report["failed"] == 0
    assert set(report["scores"]) == {*TRAINED_FIELDS, "overall"}
    assert set(report["scores"]["overall"]) >= {"precision", "recall", "f1", "anls", "support"}
    assert report["scores"]["overall"]["f1"] == 1.0
    assert set(report["reliability"][0]) == {"low", "high", "count", "correct", "accuracy"}


def test_eval_command_table_and_fields(model_dir, labelled_folder, capsys):
    status = docformer_main(
        ["eval", "--model", str(model_dir), "--data", str(labelled_folder), "--fields",
         "company,total"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    for text in ("company", "total", "overall", "support", "ANLS", "confidence", "zz_broken"):
        assert text in out
    assert "currency" not in out.split("confidence")[0]  # only the fields asked for
    assert docformer_main(["eval", "--model", str(model_dir), "--data", "/nonexistent"]) == 2


def test_eval_command_on_the_validation_split(model_dir, labelled_folder, capsys):
    status = docformer_main(
        ["eval", "--model", str(model_dir), "--data", str(labelled_folder), "--json",
         "--val-split", "0.3", "--device", "cpu"]
    )  # fmt: skip
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    examples = list(iter_labelled_folder(labelled_folder))
    assert report["documents"] == len(split_examples(examples, 0.3)[1])
    assert 0 < report["documents"] < len(examples)


@pytest.mark.slow
def test_documents_without_ocr_are_ocred_once_and_cached(extractor, labelled_folder, tmp_path):
    """Real OCR for a document whose folder has no .ocr.json; the second read hits the cache."""
    folder = tmp_path / "no-ocr"
    folder.mkdir()
    first = next(iter(iter_labelled_folder(labelled_folder)))
    shutil.copy(first.document_path, folder / first.document_path.name)
    shutil.copy(labelled_folder / f"{first.name}.json", folder / f"{first.name}.json")
    (example,) = iter_labelled_folder(folder)
    assert example.ocr_pages is None

    cache = FolderOCRCache(tmp_path / "cache")
    reader = DocumentReader(cache)
    document = load_example(example, reader)
    ocr = document.pages[0].ocr
    assert ocr is not None and ocr.words and ocr.engine.startswith("paddleocr")
    cached = list((tmp_path / "cache").rglob("*.json"))
    assert len(cached) == 1 and document.sha256 in cached[0].name
    assert cache.get(document.sha256, 0, ocr.engine).to_dict() == ocr.to_dict()
    again = load_example(example, DocumentReader(cache))
    assert again.pages[0].ocr.to_dict() == ocr.to_dict()

    report = evaluate(extractor, [example], ocr_cache=cache)
    assert report.documents == 1 and report.pages == 1 and not report.errors
