"""The checkpoint shipped in the package: present, small, loads offline as float32, and reads
the total of receipts it has never seen, through real PaddleOCR as the flows do."""

from __future__ import annotations

import json

import pytest
import torch

from docformer.checkpoints import DEFAULT_MODEL_NAME, check_model_dir, default_model_dir
from docformer.checkpoints.export import export_checkpoint
from docformer.evaluation import load_example
from docformer.extraction import Extractor, load_model
from docformer.labelled import iter_labelled_folder
from docformer.normalization import normalize_amount
from docformer.synth import generate

torch.set_num_threads(1)

# Receipts from a seed the checkpoint was not trained on (its corpus is seed 1), without
# scan degradation so the test is about the model, not about OCR of a stained page.
UNSEEN_SEED = 9090
RECEIPTS = 6


@pytest.fixture(scope="module")
def extractor() -> Extractor:
    return Extractor.from_pretrained(device="cpu")


def test_shipped_checkpoint_is_installed_small_and_described():
    directory = check_model_dir()  # the default: no path given
    assert directory == default_model_dir()
    weights = directory / "model.safetensors"
    assert weights.stat().st_size <= 30 * 2**20
    metrics = json.loads((directory / "metrics.json").read_text())
    for name in ("company", "date", "address", "total", "invoice_number", "tax"):
        assert name in metrics["fields"]
    assert (directory.parent.parent / "MODEL_CARD.md").is_file()


def test_shipped_checkpoint_loads_as_float32_offline(monkeypatch):
    # Any attempt to reach a hub would fail loudly under these settings.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    model = load_model(default_model_dir())
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_shipped_checkpoint_reads_the_total_of_unseen_receipts(extractor, tmp_path):
    assert extractor.name == DEFAULT_MODEL_NAME
    generate("receipt", n=RECEIPTS, seed=UNSEEN_SEED, out_dir=tmp_path, degrade=False)
    examples = list(iter_labelled_folder(tmp_path))
    for example in examples:
        (tmp_path / f"{example.name}.ocr.json").unlink()  # OCR them for real
    examples = list(iter_labelled_folder(tmp_path))
    documents = [load_example(example) for example in examples]
    extractions = extractor.extract(documents)

    right = 0
    for example, extraction in zip(examples, extractions, strict=True):
        total = extraction.fields.get("total")
        expected = normalize_amount(example.fields["total"])
        if total is not None and total.value_num == expected.value:
            right += 1
            # Grounded: the answer points at the OCR words that print it.
            assert total.page == 0 and total.box is not None and total.word_indices
    # The checkpoint was trained on the renderer's own words, and these are PaddleOCR's: it
    # reads 4 of these 6 totals exactly (MODEL_CARD.md). Half leaves room for float noise
    # across machines while still failing a checkpoint that does not read totals.
    assert right >= RECEIPTS // 2, f"total read right on {right} of {RECEIPTS} receipts"


def test_export_halves_the_weights_and_keeps_the_answers(tmp_path):
    exported = export_checkpoint(default_model_dir(), tmp_path / "again", half=True)
    assert exported.stat().st_size <= (default_model_dir() / "model.safetensors").stat().st_size
    original = load_model(default_model_dir())
    copy = load_model(exported.parent)
    for (name, a), (_, b) in zip(
        original.state_dict().items(), copy.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name  # already float16-exact: a second export changes nothing
