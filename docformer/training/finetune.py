"""Fine-tuning key-value extraction (what `docformer finetune` runs, `finetune_cli.py`), as one
generation per page answering every field (`docformer.generation`), with early stopping on
validation F1. `--head tagging` hands the run to `docformer.training.tagging`.

Training rows. The encoder reads a page (image + OCR tokens) and the prompt
`build_prompt(fields)`; the decoder target is `build_target(values, fields)` + `</s>`. Only the
decoder cross-entropy is trained (no line/grid targets are passed, so those heads are idle),
by default normalised over the tokens extraction may choose at each place (`training_loss`).
- A one-page document is one row. When its OCR tokens do not fit the encoder next to the prompt,
  the row is the processor window (`window_spans`) holding the most words of the labelled values
  (case-insensitive word matches; the first such window on a tie): the window where the answers
  can be read, since the target cannot be reached from a window that does not show them.
- A multi-page document: each field goes to the first page whose OCR text contains its value
  (whitespace-normalised, case-insensitive substring; page 0 when none does); every page is one
  row whose target carries the fields assigned to it and empty values for the others.

Validation (every `--eval-every` steps, default once per epoch) reads the validation documents
with the shipping `docformer.extraction.Extractor` (`evaluate_model`: what `docformer extract`,
`docformer eval` and the flows run, for either head), then `score_extractions`
(`finetune_report.py`, over `docformer.metrics.score_fields`).
Early stopping watches the overall F1 with `--patience` evaluations; the best weights are kept
and saved into OUT (model + processor) with OUT/metrics.json: per-field and overall
precision/recall/F1/ANLS, a reliability table (answer confidence bucket -> count, accuracy, over
every validation document x field), the loss curve, evaluations, steps, epochs, wall time, data
sizes, base model, fields and `max_new_tokens`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from docformer.generation import (
    DEFAULT_FIELDS,
    PageSpanConstraint,
    build_prompt,
    build_target,
)
from docformer.models.docformerv2 import (
    DocFormerV2ForConditionalGeneration,
    DocFormerV2Processor,
    EncoderRow,
)
from docformer.pretraining import IGNORE_INDEX
from docformer.training.data import TrainingExample, TrainingPage, dump_json
from docformer.training.finetune_report import print_record, score_extractions
from docformer.training.pretrain import (
    GRAD_CLIP,
    build_optimizer,
    publish_model,
    resolve_device,
    seed_everything,
    warmup_cosine,
)

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
# Generation budget: the longest training target plus this margin (a value may run longer than
# any seen in training, and the model must still get to write `</s>`).
GENERATION_MARGIN = 16

LogFn = Callable[[dict[str, Any]], None]


@dataclass
class FinetuneResult:
    out_dir: Path
    metrics: dict[str, Any]
    best_f1: float
    loss_curve: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    wall_seconds: float = 0.0


@dataclass
class TrainingRow:
    """One encoder row (OCR tokens of one page or window + prompt) and its decoder target."""

    row: EncoderRow
    image: Any  # PIL image or None
    labels: list[int]


# --- fields and targets ------------------------------------------------------------------------


def default_fields(examples: Sequence[TrainingExample]) -> list[str]:
    """Every field named in the labels: DEFAULT_FIELDS' order first, then the others sorted."""
    named = {name for example in examples for name, value in example.fields.items() if value}
    return [f for f in DEFAULT_FIELDS if f in named] + sorted(named - set(DEFAULT_FIELDS))


def _squash(text: str) -> str:
    return " ".join(text.split()).lower()


def assign_fields_to_pages(example: TrainingExample, fields: Sequence[str]) -> list[dict[str, str]]:
    """Per page, the labelled values it answers (see the module docstring)."""
    page_texts = [_squash(" ".join(w.text for w in ocr.words)) for _, ocr in example.pages]
    per_page: list[dict[str, str]] = [{} for _ in example.pages]
    for name in fields:
        value = example.fields.get(name)
        if not value or not per_page:
            continue
        wanted = _squash(value)
        page = next((i for i, text in enumerate(page_texts) if wanted in text), 0)
        per_page[page][name] = value
    return per_page


def target_ids(
    processor: DocFormerV2Processor, values: dict[str, str], fields: Sequence[str]
) -> list[int]:
    tokenizer = processor.tokenizer
    ids = tokenizer(build_target(values, fields), add_special_tokens=False)["input_ids"]
    return [*ids, tokenizer.eos_token_id]


def best_window(
    processor: DocFormerV2Processor, page: TrainingPage, values: dict[str, str], budget: int
) -> tuple[int, int]:
    """The [start, end) token span of the window showing the most words of `values`."""
    _, ocr = page
    tokens = processor.tokenize_page(ocr)
    spans = processor.window_spans(tokens, budget)
    if len(spans) == 1:
        return spans[0]
    value_words = {word for value in values.values() for word in _squash(value).split()}

    def shown(span: tuple[int, int]) -> int:
        words = set(tokens.word_ids[span[0] : span[1]])
        return sum(ocr.words[w].text.lower() in value_words for w in words)

    return max(spans, key=shown)  # max keeps the first of equals


def build_training_rows(
    processor: DocFormerV2Processor, examples: Sequence[TrainingExample], fields: Sequence[str]
) -> list[TrainingRow]:
    prompt_ids = processor.tokenize_prompt(build_prompt(fields))
    budget = processor.ocr_budget(prompt_ids)
    rows = []
    for example in examples:
        for page, values in zip(
            example.pages, assign_fields_to_pages(example, fields), strict=True
        ):
            start, end = best_window(processor, page, values, budget)
            tokens = processor.tokenize_page(page[1]).slice(start, end)
            rows.append(
                TrainingRow(
                    processor.build_row(tokens, prompt_ids),
                    page[0],
                    target_ids(processor, values, fields),
                )
            )
    return rows


def collate_rows(
    processor: DocFormerV2Processor, rows: Sequence[TrainingRow]
) -> dict[str, torch.Tensor]:
    batch = dict(
        processor.pad([r.row for r in rows], processor.pixel_values([r.image for r in rows]))
    )
    batch.pop("word_ids")
    length = max(len(r.labels) for r in rows)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    for b, row in enumerate(rows):
        labels[b, : len(row.labels)] = torch.tensor(row.labels, dtype=torch.long)
    batch["labels"] = labels
    return batch


def generation_budget(
    processor: DocFormerV2Processor, examples: Sequence[TrainingExample], fields: Sequence[str]
) -> int:
    longest = max((len(target_ids(processor, e.fields, fields)) for e in examples), default=0)
    return longest + GENERATION_MARGIN


# --- evaluation --------------------------------------------------------------------------------


def evaluate_model(
    model_dir_or_model: str | Path | DocFormerV2ForConditionalGeneration | Any,
    examples: Sequence[TrainingExample],
    fields: Sequence[str] | None = None,
    *,
    processor: DocFormerV2Processor | None = None,
    max_new_tokens: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Scores a model (either head) on labelled examples through the shipping `Extractor`, so
    fine-tuning's validation, the flows' promotion decision and `docformer eval` read alike.
    Returns {"fields": {name: scores}, "overall": scores, "reliability": [...], "documents": n},
    scores being precision/recall/f1/anls/support/... A model object needs its `processor`.
    `fields` default to the labels' fields (a tagger reads those of its schema)."""
    from docformer.extraction import load_model

    if isinstance(model_dir_or_model, str | Path):
        model = load_model(model_dir_or_model)
        model.to(resolve_device(device))
        processor = processor or DocFormerV2Processor.from_pretrained(model_dir_or_model)
    else:
        model = model_dir_or_model
        if processor is None:
            raise ValueError("evaluate_model needs the processor when given a model object")
    fields = list(fields or default_fields(examples))
    results = extract_examples(model, processor, examples, fields, max_new_tokens=max_new_tokens)
    return score_extractions(results, examples, fields)


def extract_examples(
    model: Any,
    processor: DocFormerV2Processor,
    examples: Sequence[TrainingExample],
    fields: Sequence[str],
    *,
    max_new_tokens: int | None = None,
) -> list[dict[str, Any]]:
    """Per example, {field: ExtractedField} as the shipping `Extractor` reads it with `model`
    (left in the training mode it was in)."""
    from docformer.extraction import Extractor

    was_training = model.training
    extractor = Extractor(
        model, processor, name="validation", fields=fields, max_new_tokens=max_new_tokens
    )
    units = [[(i, image, ocr) for i, (image, ocr) in enumerate(ex.pages)] for ex in examples]
    results = extractor.extract_units(units)
    model.train(was_training)
    return results


# --- the objective -----------------------------------------------------------------------------

OBJECTIVES = ("page", "vocabulary")


def training_loss(
    model: DocFormerV2ForConditionalGeneration,
    processor: DocFormerV2Processor,
    fields: Sequence[str],
    batch: dict[str, torch.Tensor],
    objective: str,
) -> torch.Tensor:
    """Decoder cross-entropy of the targets (no line/grid targets are given, so only that).

    "vocabulary": over the whole vocabulary, the model's plain objective. "page" (the default):
    normalised, at each target position, over the tokens `PageSpanConstraint` allows there, the
    tokens extraction chooses among. Extraction never writes a field name or a value that is
    not on the page, so training spends nothing on ruling those out: the names cost nothing,
    and the loss of a value is the model's preference for the right one among the page's
    answers (for a total: among the page's amounts), which is the decision extraction makes.
    A labelled value the window does not hold is trained over the whole vocabulary."""
    output = model(**batch)
    if objective == "vocabulary":
        return output.loss
    labels = batch["labels"]
    constraint = PageSpanConstraint.for_batch(processor.tokenizer, fields, batch)
    allowed = constraint.allowed_along(labels.cpu(), output.logits.size(-1))
    logits = output.logits.float().masked_fill(
        ~allowed.to(output.logits.device), torch.finfo(torch.float32).min
    )
    return torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
    )


# --- the loop ----------------------------------------------------------------------------------


def finetune(
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
    objective: str = "page",
    head: str = "auto",
    balance_tags: bool = True,
    resume: bool = False,
    log: LogFn | None = None,
) -> FinetuneResult:
    """Fine-tunes the model in `base_model_dir` on `train_examples`, validating on
    `val_examples` (the training set when there are none: then nothing stops early and the
    last weights are kept). Saves the best model, its processor and metrics.json into OUT.

    `head`: "tagging" trains the word-tagging head (`docformer.training.tagging`), "generation"
    the decoder, "auto" the head the base checkpoint has (a generator for a pre-trained one).
    `balance_tags` weighs a tagger's loss toward its rare tags (`training.tagging`); `resume`
    continues an interrupted tagging run from OUT's saved state."""
    head = resolve_head(base_model_dir, head)
    if resume and head != "tagging":
        raise ValueError("only a tagging run can be resumed (--head tagging)")
    if head == "tagging":
        from docformer.training.tagging import finetune_tagging

        return finetune_tagging(
            base_model_dir, train_examples, val_examples, out_dir, fields=fields,
            epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, warmup=warmup,
            weight_decay=weight_decay, eval_every=eval_every, patience=patience, seed=seed,
            device=device, threads=threads, balance_tags=balance_tags, resume=resume, log=log,
        )  # fmt: skip
    started = time.perf_counter()
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
    if threads is not None:
        torch.set_num_threads(threads)
    if not train_examples:
        raise ValueError("no training examples")
    out_dir = Path(out_dir)
    log = log or print_record
    torch_device = resolve_device(device)
    seed_everything(seed)

    model = DocFormerV2ForConditionalGeneration.from_pretrained(base_model_dir)
    processor = DocFormerV2Processor.from_pretrained(base_model_dir)
    model.to(torch_device).train()
    fields = list(fields or default_fields(train_examples))
    if not fields:
        raise ValueError("the training labels name no field; pass fields")
    rows = build_training_rows(processor, train_examples, fields)
    has_validation = len(val_examples) > 0
    eval_examples = list(val_examples) if has_validation else list(train_examples)
    max_new_tokens = max(
        generation_budget(processor, train_examples, fields),
        generation_budget(processor, eval_examples, fields),
    )

    steps_per_epoch = math.ceil(len(rows) / batch_size)
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    if total_steps < 1:
        raise ValueError("nothing to train: epochs and max_steps must allow at least one step")
    warmup = min(100, total_steps // 10) if warmup is None else warmup
    eval_every = eval_every or steps_per_epoch
    optimizer = build_optimizer(model, lr, weight_decay, torch_device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup, total_steps)
    )

    loss_curve: list[dict[str, Any]] = []
    evaluations: list[dict[str, Any]] = []
    best_f1, best_step, best_state, best_scores = -1.0, 0, None, None
    evaluations_since_best = 0
    step, interval_losses = 0, []
    order = np.arange(0)
    while step < total_steps:
        epoch, offset = divmod(step * batch_size, steps_per_epoch * batch_size)
        if offset == 0:
            # A new permutation every epoch, fixed by (seed, epoch).
            order = np.random.default_rng([seed, epoch]).permutation(len(rows))
        chunk = order[offset : offset + batch_size]
        batch = collate_rows(processor, [rows[i] for i in chunk])
        batch = {key: value.to(torch_device) for key, value in batch.items()}

        loss = training_loss(model, processor, fields, batch, objective)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        interval_losses.append(float(loss.detach()))

        end_of_epoch = step % steps_per_epoch == 0
        if end_of_epoch or step == total_steps or step % 10 == 0:
            record = {
                "step": step,
                "total_steps": total_steps,
                "epoch": round(step / steps_per_epoch, 4),
                "loss": float(np.mean(interval_losses)),
                "lr": scheduler.get_last_lr()[0],
                "elapsed_s": time.perf_counter() - started,
            }
            loss_curve.append(record)
            log(record)
            interval_losses = []
        if step % eval_every == 0 or step == total_steps:
            scores = evaluate_model(
                model, eval_examples, fields, processor=processor, max_new_tokens=max_new_tokens
            )
            overall = scores["overall"]
            evaluation = {
                "step": step,
                "epoch": round(step / steps_per_epoch, 4),
                "f1": overall["f1"],
                "anls": overall["anls"],
                "precision": overall["precision"],
                "recall": overall["recall"],
            }
            evaluations.append(evaluation)
            log({"evaluation": evaluation})
            # Without a validation set the training-set score says nothing about overfitting:
            # keep the latest weights rather than the best-scoring ones.
            if overall["f1"] > best_f1 or not has_validation:
                best_f1, best_step, best_scores = overall["f1"], step, scores
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
                evaluations_since_best = 0
            else:
                evaluations_since_best += 1
                if evaluations_since_best >= patience:
                    log({"early_stop": step, "best_step": best_step, "best_f1": best_f1})
                    break

    model.load_state_dict(best_state)
    publish_model(model, processor, out_dir)
    wall_seconds = time.perf_counter() - started
    metrics = {
        "fields": fields,
        "evaluated_on": "validation" if has_validation else "train",
        "validation": {**best_scores["fields"], "overall": best_scores["overall"]},
        "reliability": best_scores["reliability"],
        "best_f1": best_f1,
        "best_step": best_step,
        "steps": step,
        "epochs": round(step / steps_per_epoch, 4),
        "steps_per_epoch": steps_per_epoch,
        "wall_seconds": wall_seconds,
        "train_size": {"documents": len(train_examples), "rows": len(rows)},
        "val_size": {"documents": len(val_examples)},
        "base_model": str(base_model_dir),
        "max_new_tokens": max_new_tokens,
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
            "device": str(torch_device),
            "objective": objective,
        },  # fmt: skip
        "loss_curve": loss_curve,
        "evaluations": evaluations,
    }
    dump_json(out_dir / METRICS_FILE, metrics)
    return FinetuneResult(out_dir, metrics, best_f1, loss_curve, step, wall_seconds)


HEADS = ("auto", "tagging", "generation")


def resolve_head(base_model_dir: str | Path, head: str) -> str:
    """ "tagging" or "generation": `head`, or for "auto" the head the base checkpoint has."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, not {head!r}")
    if head != "auto":
        return head
    from docformer.models.docformerv2 import DocFormerV2Config

    return (
        "tagging"
        if DocFormerV2Config.from_pretrained(base_model_dir).tagging_fields
        else ("generation")
    )
