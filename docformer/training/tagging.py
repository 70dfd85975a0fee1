"""`docformer finetune --head tagging`: train the word-tagging head on labelled documents.

Labels arrive as `{field: value}`. Each value is aligned to the OCR words that print it
(`docformer.alignment.align_examples`: exact, then case-, then spacing-insensitive, substring,
fuzzy; a value printed twice goes to the occurrence nearest its field's usual place). The first
aligned word is tagged B-field, the rest I-field, every other word O (`docformer.tagging`). A
label that aligns nowhere gives no training signal for that field on that document but is
counted in the alignment report (`metrics.json` "alignment"), so the reader sees how much of the
labelling the OCR could carry.

Every window of every page is one training row (`docformer.tagging.tag_windows`), windows with
no field in them included: they teach the head what is not a field. The loss is cross-entropy
over each word's first token, each tag weighed by the square root of how much rarer it is than
O in the training rows, at most `MAX_TAG_WEIGHT` (`tag_loss_weights`): a receipt has one
B-total among a hundred O words, and without the weights the head learns to say O for a long
time before it learns the single-word fields (`python -m bench.tagging_rates --balance`,
BENCHMARKS.md). `balance_tags=False` trains on the plain loss.

Validation runs the code that ships: an `Extractor` over the model being trained reads the
validation documents exactly as `docformer extract`, `docformer eval` and the flows do, and
`docformer.metrics.score_fields` scores it. The best weights by overall F1 are kept; training
stops after `patience` evaluations without a better one.

The value style of each field (`docformer.value_style`) is learned from the training labels and
saved in the model's config, so extraction writes values the way the labels are written.

Resumable: every evaluation writes OUT/training_state.pt (weights, optimiser, scheduler, step,
best weights, curves); `resume=True` continues from it with the same data and settings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from docformer.alignment import align_examples
from docformer.answer_thresholds import drop_unsure, learn_answer_thresholds
from docformer.models.docformerv2 import (
    DocFormerV2Config,
    DocFormerV2ForTokenClassification,
    DocFormerV2Processor,
)
from docformer.tagging import IGNORE_INDEX, TagWindow, tag_windows, word_tags
from docformer.training.data import TrainingExample, dump_json
from docformer.training.pretrain import (
    GRAD_CLIP,
    build_optimizer,
    publish_model,
    resolve_device,
    seed_everything,
    warmup_cosine,
)
from docformer.value_style import learn_value_styles, styles_to_config

METRICS_FILE = "metrics.json"
STATE_FILE = "training_state.pt"
# The tagging head's learning rate, as a multiple of the encoder's. A new head starts from random
# weights on a pre-trained encoder: at one shared rate either the head learns slowly or its first
# random gradients disturb the encoder (`python -m bench.tagging_rates`, BENCHMARKS.md).
HEAD_LR_SCALE = 10.0
# The largest loss weight a rare tag gets (`tag_loss_weights`); unbounded weights let a tag seen
# on a handful of words dominate the gradient.
MAX_TAG_WEIGHT = 10.0


@dataclass
class TaggingRow:
    window: TagWindow
    image: Any  # PIL image or None


def build_tagging_rows(
    processor: DocFormerV2Processor,
    examples: Sequence[TrainingExample],
    fields: Sequence[str],
) -> tuple[list[TaggingRow], dict[str, Any]]:
    """Training rows of every page window, with word tags from the aligned labels; and the
    alignment report (per field: labels, aligned, by which method, how many printed twice).

    A value printed more than once is tagged at one copy (`align_examples` picks the one
    nearest its field's usual place) and its other copies are O. Leaving the other copies out
    of the loss instead (on real receipts the total is printed two or more times on most
    pages) was measured worse on SROIE (BENCHMARKS.md: the tagging head), so it is not done."""
    aligned, report = align_examples(
        [
            ({name: value for name, value in ex.fields.items() if name in fields and value},
             [ocr for _, ocr in ex.pages])
            for ex in examples
        ]
    )  # fmt: skip
    rows = []
    for example, alignments in zip(examples, aligned, strict=True):
        for page_index, (image, ocr) in enumerate(example.pages):
            spans = {
                name: alignment.word_indices
                for name, alignment in alignments.items()
                if alignment.page == page_index
            }
            tags = word_tags(len(ocr.words), spans, fields)
            rows += [TaggingRow(w, image) for w in tag_windows(processor, ocr, tags)]
    return rows, report.to_dict()


def collate_tagging_rows(
    processor: DocFormerV2Processor, rows: Sequence[TaggingRow]
) -> dict[str, torch.Tensor]:
    batch = dict(
        processor.pad([r.window.row for r in rows], processor.pixel_values([r.image for r in rows]))
    )
    labels = torch.full(batch["input_ids"].shape, IGNORE_INDEX, dtype=torch.long)
    for b, row in enumerate(rows):
        labels[b, : len(row.window.token_tags)] = torch.tensor(row.window.token_tags)
    batch["labels"] = labels
    return batch


def tag_loss_weights(rows: Sequence[TaggingRow], n_tags: int) -> torch.Tensor:
    """Per tag, sqrt(count of O / count of the tag) over the rows' word tags, capped at
    `MAX_TAG_WEIGHT`; O weighs 1. A tag the rows never show gets the cap (it has no words, so
    its weight only matters if a later row brings one)."""
    counts = np.bincount(
        [t for row in rows for t in row.window.token_tags if t >= 0], minlength=n_tags
    ).astype(float)
    ratios = counts[0] / np.maximum(counts, 1.0)
    return torch.tensor(np.minimum(MAX_TAG_WEIGHT, np.sqrt(ratios)), dtype=torch.float32)


def tagging_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """Cross-entropy of the words' tags (labels -100 elsewhere), weighted per tag when
    `weights` is given; a batch without a tagged word gives 0, still differentiable."""
    flat_logits, flat_labels = logits.float().flatten(0, 1), labels.flatten()
    if not (flat_labels != IGNORE_INDEX).any():
        return flat_logits.sum() * 0.0
    return torch.nn.functional.cross_entropy(
        flat_logits, flat_labels, weight=weights, ignore_index=IGNORE_INDEX
    )


def tagging_model(
    base_model_dir: str | Path, fields: Sequence[str] | None
) -> DocFormerV2ForTokenClassification:
    """The tagger to train: a tagging checkpoint as it is, or under a head for `fields` when
    they differ from its schema (the rows of the tags it shares with the old schema are kept,
    so a tagger trained on seven fields starts a four-field one knowing those four); or the
    encoder of a pre-trained or generation checkpoint under a new head."""
    config = DocFormerV2Config.from_pretrained(base_model_dir)
    old_fields = list(config.tagging_fields or [])
    if old_fields and (not fields or list(fields) == old_fields):
        return DocFormerV2ForTokenClassification.from_pretrained(base_model_dir)
    if not fields:
        raise ValueError("a new tagging head needs its fields")
    old_tags = config.tag_names
    config.tagging_fields = list(fields)
    model = DocFormerV2ForTokenClassification.from_pretrained(
        base_model_dir, config=config, ignore_mismatched_sizes=True
    )
    if old_fields:
        from safetensors import safe_open

        with safe_open(str(Path(base_model_dir) / "model.safetensors"), "pt") as weights:
            old_weight = weights.get_tensor("classifier.weight").float()
            old_bias = weights.get_tensor("classifier.bias").float()
        with torch.no_grad():
            for row, tag in enumerate(config.tag_names):
                if tag in old_tags:
                    model.classifier.weight[row] = old_weight[old_tags.index(tag)]
                    model.classifier.bias[row] = old_bias[old_tags.index(tag)]
    return model


def finetune_tagging(
    base_model_dir: str | Path,
    train_examples: Sequence[TrainingExample],
    val_examples: Sequence[TrainingExample],
    out_dir: str | Path,
    *,
    fields: Sequence[str] | None = None,
    epochs: int = 20,
    max_steps: int | None = None,
    batch_size: int = 8,
    lr: float = 5e-4,
    warmup: int | None = None,
    weight_decay: float = 0.01,
    eval_every: int | None = None,
    patience: int = 3,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    balance_tags: bool = True,
    resume: bool = False,
    log=None,
):
    """Trains the tagging head (and the encoder under it) from `base_model_dir`; saves the best
    model, processor and metrics.json into OUT. See the module docstring."""
    from docformer.training.finetune import FinetuneResult, default_fields, evaluate_model
    from docformer.training.finetune_report import print_record

    started = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    if not train_examples:
        raise ValueError("no training examples")
    out_dir = Path(out_dir)
    log = log or print_record
    torch_device = resolve_device(device)
    seed_everything(seed)

    base_config = DocFormerV2Config.from_pretrained(base_model_dir)
    fields = list(fields or base_config.tagging_fields or default_fields(train_examples))
    if not fields:
        raise ValueError("the training labels name no field; pass fields")
    model = tagging_model(base_model_dir, fields)
    processor = DocFormerV2Processor.from_pretrained(base_model_dir)
    styles = learn_value_styles(
        {name: [ex.fields[name] for ex in train_examples if ex.fields.get(name)] for name in fields}
    )
    model.config.value_styles = styles_to_config(styles) or None
    # A base tagger's thresholds belong to its own validation; this run learns its own at the end.
    model.config.answer_thresholds = None
    model.to(torch_device).train()

    rows, alignment = build_tagging_rows(processor, train_examples, fields)
    log({"message": f"alignment of the training labels: {alignment}"})
    if not rows:
        raise ValueError("the training documents have no OCR words")
    loss_weights = None
    if balance_tags:
        loss_weights = tag_loss_weights(rows, len(model.config.tag_names)).to(torch_device)
        log({"message": "tag loss weights: " + ", ".join(
            f"{tag} {weight:.2f}" for tag, weight in
            zip(model.config.tag_names, loss_weights.tolist(), strict=True))})  # fmt: skip
    has_validation = len(val_examples) > 0
    eval_examples = list(val_examples) if has_validation else list(train_examples)

    steps_per_epoch = math.ceil(len(rows) / batch_size)
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    if total_steps < 1:
        raise ValueError("nothing to train: epochs and max_steps must allow at least one step")
    warmup = min(100, total_steps // 10) if warmup is None else warmup
    eval_every = eval_every or steps_per_epoch
    optimizer = build_optimizer(
        model, lr, weight_decay, torch_device, lr_scales={"classifier.": HEAD_LR_SCALE}
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup, total_steps)
    )

    state: dict[str, Any] = {
        "step": 0, "loss_curve": [], "evaluations": [], "best_f1": -1.0, "best_step": 0,
        "best_state": None, "best_scores": None, "evaluations_since_best": 0,
        "elapsed_before": 0.0,
    }  # fmt: skip
    state_path = out_dir / STATE_FILE
    if resume and state_path.is_file():
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state.update(saved["progress"])
        log({"message": f"resumed at step {state['step']} from {state_path}"})

    def elapsed() -> float:
        return state["elapsed_before"] + time.perf_counter() - started

    step, interval_losses, stopped_early = state["step"], [], False
    order, order_epoch = np.arange(0), None
    while step < total_steps:
        epoch, offset = divmod(step * batch_size, steps_per_epoch * batch_size)
        if epoch != order_epoch:
            # A permutation per epoch, fixed by (seed, epoch): a resumed run draws the same batches.
            order, order_epoch = np.random.default_rng([seed, epoch]).permutation(len(rows)), epoch
        chunk = order[offset : offset + batch_size]
        batch = collate_tagging_rows(processor, [rows[i] for i in chunk])
        batch = {key: value.to(torch_device) for key, value in batch.items()}
        labels = batch.pop("labels")
        loss = tagging_loss(model(**batch).logits, labels, loss_weights)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        interval_losses.append(float(loss.detach()))

        if step % 10 == 0 or step == total_steps or step % steps_per_epoch == 0:
            record = {
                "step": step,
                "total_steps": total_steps,
                "epoch": round(step / steps_per_epoch, 4),
                "loss": float(np.mean(interval_losses)),
                "lr": scheduler.get_last_lr()[0],
                "elapsed_s": elapsed(),
            }
            state["loss_curve"].append(record)
            log(record)
            interval_losses = []
        if step % eval_every == 0 or step == total_steps:
            model.eval()
            scores = evaluate_model(model, eval_examples, fields, processor=processor)
            model.train()
            overall = scores["overall"]
            evaluation = {
                "step": step,
                "epoch": round(step / steps_per_epoch, 4),
                "f1": overall["f1"],
                "anls": overall["anls"],
                "precision": overall["precision"],
                "recall": overall["recall"],
            }
            state["evaluations"].append(evaluation)
            log({"evaluation": evaluation})
            # Without a validation set the training-set score says nothing about overfitting:
            # keep the latest weights rather than the best-scoring ones.
            if overall["f1"] > state["best_f1"] or not has_validation:
                state.update(
                    best_f1=overall["f1"], best_step=step, best_scores=scores,
                    evaluations_since_best=0,
                    best_state={k: v.detach().to("cpu", copy=True)
                                for k, v in model.state_dict().items()},
                )  # fmt: skip
            else:
                state["evaluations_since_best"] += 1
            state["step"] = step
            _save_state(state_path, model, optimizer, scheduler, state, elapsed())
            if state["evaluations_since_best"] >= patience:
                log({"early_stop": step, "best_step": state["best_step"],
                     "best_f1": state["best_f1"]})  # fmt: skip
                stopped_early = True
                break

    model.load_state_dict(state["best_state"])
    best_scores, scores_without_thresholds = state["best_scores"], None
    if has_validation:
        thresholds, best_scores = learn_thresholds(model, processor, val_examples, fields)
        model.config.answer_thresholds = thresholds or None
        scores_without_thresholds = state["best_scores"]["overall"]
        log({"message": f"answer thresholds learned on validation: {thresholds}; F1 "
             f"{scores_without_thresholds['f1']:.3f} -> {best_scores['overall']['f1']:.3f}"})  # fmt: skip
    publish_model(model, processor, out_dir)
    wall_seconds = elapsed()
    metrics = {
        "head": "tagging",
        "fields": fields,
        "evaluated_on": "validation" if has_validation else "train",
        "validation": {**best_scores["fields"], "overall": best_scores["overall"]},
        "reliability": best_scores["reliability"],
        "best_f1": best_scores["overall"]["f1"],
        "answer_thresholds": model.config.answer_thresholds or {},
        "validation_without_thresholds": scores_without_thresholds,
        "best_step": state["best_step"],
        "steps": step,
        "stopped_early": stopped_early,
        "epochs": round(step / steps_per_epoch, 4),
        "steps_per_epoch": steps_per_epoch,
        "wall_seconds": wall_seconds,
        "train_size": {"documents": len(train_examples), "rows": len(rows)},
        "val_size": {"documents": len(val_examples)},
        "alignment": alignment,
        "value_styles": model.config.value_styles or {},
        "base_model": str(base_model_dir),
        "hyperparameters": {
            "epochs": epochs,
            "max_steps": max_steps,
            "batch_size": batch_size,
            "lr": lr,
            "warmup": warmup,
            "weight_decay": weight_decay,
            "eval_every": eval_every,
            "patience": patience,
            "seed": seed,
            "balance_tags": balance_tags,
            "device": str(torch_device),
            "threads": torch.get_num_threads(),
        },  # fmt: skip
        "loss_curve": state["loss_curve"],
        "evaluations": state["evaluations"],
    }
    dump_json(out_dir / METRICS_FILE, metrics)
    state_path.unlink(missing_ok=True)  # finished: nothing to resume
    return FinetuneResult(
        out_dir, metrics, best_scores["overall"]["f1"], state["loss_curve"], step, wall_seconds
    )


def learn_thresholds(
    model: DocFormerV2ForTokenClassification,
    processor: DocFormerV2Processor,
    examples: Sequence[TrainingExample],
    fields: Sequence[str],
) -> tuple[dict[str, float], dict[str, Any]]:
    """The answer thresholds that maximise each field's F1 on `examples`
    (`docformer.answer_thresholds`), and the scores of the model's answers with them applied."""
    from docformer.training.finetune import extract_examples
    from docformer.training.finetune_report import score_extractions

    model.config.answer_thresholds = None
    results = extract_examples(model, processor, examples, fields)
    thresholds = learn_answer_thresholds(
        [{name: (f.value, f.confidence) for name, f in found.items()} for found in results],
        [example.fields for example in examples],
        fields,
    )
    for found in results:
        drop_unsure(found, thresholds)
    return thresholds, score_extractions(results, examples, fields)


def _save_state(path: Path, model, optimizer, scheduler, state: dict[str, Any], elapsed: float):
    """Everything a resumed run needs, written atomically (a kill mid-write leaves the last)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    progress = {**state, "elapsed_before": elapsed}
    temporary = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "progress": progress,
        },
        temporary,
    )
    temporary.replace(path)


__all__ = [
    "TaggingRow",
    "build_tagging_rows",
    "collate_tagging_rows",
    "finetune_tagging",
    "learn_thresholds",
    "tagging_model",
]
