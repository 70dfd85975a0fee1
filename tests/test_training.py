"""Training loops end to end on a few generated documents and a very small model: data loading
(OCR cache included, with real PaddleOCR), `docformer pretrain` (outputs, exact resume),
`docformer finetune` (outputs, metrics) and a check that fine-tuning really learns."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from docformer.document import OCRResult, Word
from docformer.models.docformerv2 import (
    DocFormerV2Config,
    DocFormerV2ForConditionalGeneration,
    DocFormerV2Processor,
)
from docformer.ocr.cache import FolderOCRCache
from docformer.synth import generate
from docformer.tokenization import iter_corpus_texts, train_tokenizer
from docformer.training import finetune_cli, pretrain_cli
from docformer.training.data import (
    CorpusPages,
    TrainingExample,
    load_corpus,
    load_pages,
    split_examples,
)
from docformer.training.finetune import (
    assign_fields_to_pages,
    best_window,
    evaluate_model,
    finetune,
)
from docformer.training.pretrain import pretrain

torch.set_num_threads(1)

# A model small enough to train in seconds on a busy 2-core machine.
TINY = dict(
    d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2, num_decoder_layers=2,
    image_size=[64, 48], patch_size=16, max_text_tokens=128,
)  # fmt: skip
TINY_FLAGS = [
    flag for key, value in TINY.items() for flag in ("--set", f"{key}={json.dumps(value)}")
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six receipts and four documents of other kinds (PNG, JPEG, TIFF and PDF files)."""
    folder = tmp_path_factory.mktemp("corpus")
    generate("receipt", 6, 3, folder, degrade=False)
    generate("mixed", 4, 5, folder)
    return folder


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory):
    """`docformer pretrain` run once: 4 steps, a checkpoint every 2."""
    out = tmp_path_factory.mktemp("pretrained")
    argv = [
        "--corpus", str(corpus), "--steps", "4", "--out", str(out), "--batch-size", "4",
        "--warmup", "1", "--save-every", "2", "--log-every", "1", "--threads", "1",
        "--vocab-size", "700", *TINY_FLAGS,
    ]  # fmt: skip
    assert pretrain_cli.main(argv) == 0
    return out, argv


def read_log(folder):
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


# --- data ------------------------------------------------------------------------------------


def test_load_pages_reads_labels_ocr_and_shrinks_images(corpus):
    examples = load_pages(corpus, image_size=(64, 48))
    assert len(examples) == 10
    receipt = next(e for e in examples if e.name.startswith("receipt"))
    assert receipt.fields == json.loads((corpus / f"{receipt.name}.json").read_text())
    image, ocr = receipt.pages[0]
    assert image.size == (48, 64) and image.mode == "RGB"
    assert ocr.words and ocr.width > 100  # boxes stay in the page pixels of the OCR
    assert len(load_pages(corpus, limit=3, image_size=(64, 48))) == 3


def test_corpus_pages_are_read_lazily(corpus):
    pages = load_corpus(corpus, image_size=(64, 48))
    assert isinstance(pages, CorpusPages) and len(pages) == pages.documents == 10
    image, ocr = pages[3]
    assert image.size == (48, 64) and len(ocr.words) >= 2
    assert pages.ocr_at(3).to_dict() == ocr.to_dict()


def test_ocr_cache_is_filled_and_then_used(corpus, tmp_path):
    folder, cache = tmp_path / "labelled", tmp_path / "cache"
    folder.mkdir()
    name = sorted(p.stem for p in corpus.glob("receipt_*.jpg"))[0]
    shutil.copy(corpus / f"{name}.jpg", folder)
    shutil.copy(corpus / f"{name}.json", folder)  # no .ocr.json: PaddleOCR reads it

    first = load_pages(folder, ocr_cache=cache, image_size=(64, 48))
    ocr = first[0].pages[0][1]
    cached_files = list(cache.rglob("*.json"))
    assert len(cached_files) == 1 and ocr.engine.startswith("paddleocr")
    assert any(word.text for word in ocr.words)

    # Mark the cached result: a second load must return it instead of running OCR again.
    marked = OCRResult.from_json(cached_files[0].read_text())
    marked.words[0].text = "FROM-THE-CACHE"
    cached_files[0].write_text(marked.to_json())
    second = load_pages(folder, ocr_cache=cache, image_size=(64, 48))
    assert second[0].pages[0][1].words[0].text == "FROM-THE-CACHE"
    assert FolderOCRCache(cache).get("0" * 64, 0, ocr.engine) is None

    # With the renderer's exact words beside it, the engine's reading is still what training
    # sees when asked to train on what the OCR reads (here: the cached reading, same bytes).
    shutil.copy(corpus / f"{name}.ocr.json", folder)
    assert (
        load_pages(folder, ocr_cache=cache, image_size=(64, 48))[0].pages[0][1].engine
        == (json.loads((corpus / f"{name}.ocr.json").read_text())["engine"])
    )
    engine_read = load_pages(folder, ocr_cache=cache, image_size=(64, 48), ocr_files=False)
    assert engine_read[0].pages[0][1].words[0].text == "FROM-THE-CACHE"


def test_split_is_by_name_and_stable_when_examples_are_added():
    examples = [TrainingExample(f"doc{i}", [], {}) for i in range(50)]
    train, val = split_examples(examples, 0.2, seed=0)
    assert len(train) + len(val) == 50 and 3 <= len(val) <= 20
    more = examples + [TrainingExample(f"new{i}", [], {}) for i in range(30)]
    _, val_more = split_examples(more, 0.2, seed=0)
    assert {e.name for e in val} <= {e.name for e in val_more}
    # Never an empty side when there are two or more examples.
    train_two, val_two = split_examples(examples[:2], 0.2, seed=0)
    assert len(train_two) == len(val_two) == 1


# --- pretrain --------------------------------------------------------------------------------


def test_pretrain_cli_writes_a_loadable_model_and_the_loss_curve(pretrained):
    out, _ = pretrained
    model = DocFormerV2ForConditionalGeneration.from_pretrained(out)
    processor = DocFormerV2Processor.from_pretrained(out)
    assert model.config.d_model == 64 and len(processor.tokenizer) == model.config.vocab_size
    log = read_log(out)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    for record in log:
        for key in ("loss", "mlm_loss", "line_loss", "grid_loss", "lr", "tokens_per_s"):
            assert np.isfinite(record[key]), key
    summary = json.loads((out / "training.json").read_text())
    assert summary["steps"] == 4 and summary["corpus"] == {"documents": 10, "pages": 10}
    assert set(summary["final_losses"]) == {"loss", "mlm_loss", "line_loss", "grid_loss"}
    assert (out / "checkpoint" / "training_state.pt").is_file()


def test_pretrain_cli_resumes_from_its_checkpoint(pretrained, tmp_path):
    out, argv = pretrained
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    tokenizer_before = (resumed / "tokenizer.json").read_text()
    argv = [a if a != str(out) else str(resumed) for a in argv]
    argv[argv.index("--steps") + 1] = "6"
    assert pretrain_cli.main(argv) == 0
    log = read_log(resumed)
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert log[:4] == read_log(out)  # continued, not restarted
    assert json.loads((resumed / "training.json").read_text())["steps"] == 6
    assert (resumed / "tokenizer.json").read_text() == tokenizer_before


def test_interrupted_pretraining_resumes_to_the_same_weights(corpus, tmp_path):
    pages = load_corpus(corpus, image_size=(64, 48))
    tokenizer = train_tokenizer(iter_corpus_texts([corpus]), 700)
    settings = dict(
        config_overrides=TINY, steps=5, batch_size=2, warmup=1, save_every=2, log_every=1,
        tokenizer=tokenizer, threads=1, device="cpu", log=lambda record: None,
    )  # fmt: skip
    straight = pretrain(pages, tmp_path / "straight", **settings)

    class Interrupted(Exception):
        pass

    def interrupt_at_step_3(record):
        if record["step"] == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        pretrain(pages, tmp_path / "resumed", **{**settings, "log": interrupt_at_step_3})
    resumed = pretrain(pages, tmp_path / "resumed", **settings)  # from the step-2 checkpoint

    assert [r["step"] for r in resumed.loss_curve] == [1, 2, 3, 4, 5]
    assert resumed.final_losses == straight.final_losses
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretraining_continues_from_an_existing_model(pretrained, tmp_path):
    """What the `pretrain` flow does with a user's own OCR results: in-memory pages, --init."""
    out = pretrained[0]
    pages = [(None, page_of(["ACME TRADING SDN BHD", "TOTAL 12.50", "THANK YOU"]))] * 3
    result = pretrain(
        pages, tmp_path / "continued", init_model_dir=out, steps=2, batch_size=2, warmup=1,
        threads=1, device="cpu", log=lambda record: None,
    )  # fmt: skip
    assert result.steps == 2 and set(result.final_losses) >= {"mlm_loss", "line_loss"}
    continued = DocFormerV2Processor.from_pretrained(tmp_path / "continued")
    assert (
        continued.tokenizer.get_vocab()
        == DocFormerV2Processor.from_pretrained(out).tokenizer.get_vocab()
    )
    assert json.loads((tmp_path / "continued" / "training.json").read_text())[
        "init_model_dir"
    ] == str(out)


# --- finetune --------------------------------------------------------------------------------


def page_of(lines: list[str], width: int = 1000, height: int = 1000) -> OCRResult:
    words, y = [], 10
    for line_id, line in enumerate(lines):
        x = 10
        for text in line.split():
            words.append(Word(text, (x, y, x + 10 * len(text), y + 20), 1.0, line_id))
            x += 10 * len(text) + 10
        y += 30
    return OCRResult(width, height, words, "test")


def test_fields_of_a_multi_page_document_go_to_the_page_showing_them():
    example = TrainingExample(
        "two-pages",
        [(None, page_of(["ACME Trading", "Invoice  INV-7"])), (None, page_of(["TOTAL", "12.50"]))],
        {"company": "acme  trading", "total": "12.50", "tax": "0.99"},
    )
    pages = assign_fields_to_pages(example, ["company", "total", "tax"])
    # tax is printed nowhere: it falls back to the first page.
    assert pages == [{"company": "acme  trading", "tax": "0.99"}, {"total": "12.50"}]


def test_a_long_page_trains_on_the_window_showing_the_values(pretrained):
    processor = DocFormerV2Processor.from_pretrained(pretrained[0])
    lines = [f"item number {i} costs {i}.00" for i in range(60)] + ["TOTAL 987.65"]
    page = (None, page_of(lines))
    tokens = processor.tokenize_page(page[1])
    budget = 40
    spans = processor.window_spans(tokens, budget)
    assert len(spans) > 2
    start, end = best_window(processor, page, {"total": "987.65"}, budget)
    shown = {page[1].words[w].text for w in tokens.word_ids[start:end]}
    assert "987.65" in shown and (start, end) != spans[0]


def test_finetune_cli_writes_model_and_metrics(corpus, pretrained, tmp_path):
    out = tmp_path / "finetuned"
    argv = [
        "--model", str(pretrained[0]), "--data", str(corpus), "--out", str(out),
        "--val-split", "0.3", "--epochs", "1", "--batch-size", "4", "--threads", "1",
        "--fields", "company,total,date",
    ]  # fmt: skip
    assert finetune_cli.main(argv) == 0
    DocFormerV2ForConditionalGeneration.from_pretrained(out)
    DocFormerV2Processor.from_pretrained(out)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "fields", "validation", "reliability", "loss_curve", "evaluations", "steps", "epochs",
        "wall_seconds", "train_size", "val_size", "base_model", "best_f1", "max_new_tokens",
    ):  # fmt: skip
        assert key in metrics, key
    assert metrics["fields"] == ["company", "total", "date"]
    assert set(metrics["validation"]) == {"company", "total", "date", "overall"}
    for key in ("precision", "recall", "f1", "anls", "support"):
        assert key in metrics["validation"]["overall"]
    assert metrics["train_size"]["documents"] + metrics["val_size"]["documents"] == 10
    assert (
        sum(bucket["count"] for bucket in metrics["reliability"])
        == 3 * metrics["val_size"]["documents"]
    )
    assert metrics["steps"] == metrics["loss_curve"][-1]["step"] >= 1


def test_finetune_without_a_model_says_what_is_missing(corpus, tmp_path, capsys):
    argv = [
        "--model",
        str(tmp_path / "nowhere"),
        "--data",
        str(corpus),
        "--out",
        str(tmp_path / "o"),
    ]
    assert finetune_cli.main(argv) == 2
    assert "does not exist" in capsys.readouterr().out


@pytest.mark.slow
def test_finetuning_learns_to_read_the_total(tmp_path):
    """A fresh tiny model overfits two dozen clean receipts: the train-set F1 on `total` must
    rise far above the untrained model's (which, held to the page's amounts, picks one of a few
    and is right on some receipts)."""
    folder = tmp_path / "receipts"
    generate("receipt", 24, 7, folder, degrade=False)
    tokenizer = train_tokenizer(iter_corpus_texts([folder]), 800)
    config = DocFormerV2Config.from_preset(
        "tiny", **{**TINY, "max_text_tokens": 256, "dropout_rate": 0.0}, vocab_size=len(tokenizer)
    )
    torch.manual_seed(0)
    base = tmp_path / "base"
    DocFormerV2ForConditionalGeneration(config).save_pretrained(base)
    DocFormerV2Processor.from_config(config, tokenizer).save_pretrained(base)

    examples = load_pages(folder, image_size=config.image_size)
    before = evaluate_model(base, examples, ["total"], device="cpu")
    result = finetune(
        base, examples, [], tmp_path / "out", fields=["total"], epochs=1000, max_steps=200,
        batch_size=8, lr=3e-3, eval_every=200, threads=1, device="cpu", log=lambda r: None,
    )  # fmt: skip
    assert result.best_f1 >= max(0.6, before["fields"]["total"]["f1"] + 0.25)
    assert result.metrics["evaluated_on"] == "train"
    after = evaluate_model(tmp_path / "out", examples, ["total"], device="cpu")
    assert after["fields"]["total"]["f1"] == pytest.approx(result.best_f1)
