"""Pre-training DocFormerv2 on its three self-supervised tasks at once (masked spans on the
decoder, token-to-line and token-to-grid on the encoder): what `docformer pretrain` runs
(`pretrain_cli.py`).

What it writes into OUT:
- the model at any time: `config.json`, `model.safetensors`, tokenizer files and
  `processor_config.json` (published at every checkpoint, so OUT is always loadable);
- `train_log.jsonl`: one JSON object per logged step (the loss curve): step, loss, mlm_loss,
  line_loss, grid_loss (means over the steps since the previous line), lr, tokens_per_s (encoder
  text tokens, padding excluded), elapsed_s;
- `checkpoint/`: the model plus `training_state.pt` (optimizer, scheduler, step, data position,
  RNG states), replaced atomically every `--save-every` steps. Re-running the same command
  continues from it and gives the same weights as a run that was never interrupted;
- `training.json` at the end: settings, corpus sizes, wall time, final losses.

The recipe, nanoGPT's: AdamW (weight decay on matrices only), linear warm-up then cosine decay
to a tenth of the peak rate, gradient clipping at 1.0. Pages are drawn in a fresh permutation
each epoch, a permutation fixed by (seed, epoch), so the data position is one number.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from docformer.models.docformerv2 import (
    DocFormerV2Config,
    DocFormerV2ForPreTraining,
    DocFormerV2PreTrainedModel,
    DocFormerV2Processor,
)
from docformer.pretraining import PretrainingCollator
from docformer.training.data import (
    TrainingPage,
    corpus_texts_of_pages,
    describe_sizes,
    dump_json,
)

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "training_state.pt"
LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "training.json"
LOSS_KEYS = ("loss", "mlm_loss", "line_loss", "grid_loss")
MIN_LR_RATIO = 0.1  # cosine decay ends at a tenth of the peak rate, as in nanoGPT
GRAD_CLIP = 1.0

LogFn = Callable[[dict[str, Any]], None]


@dataclass
class PretrainResult:
    out_dir: Path
    steps: int
    final_losses: dict[str, float]
    loss_curve: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0


# --- small pieces the loop uses -------------------------------------------------------------


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float = MIN_LR_RATIO) -> float:
    """Multiplier of the peak learning rate at `step` (0-based): linear warm-up over `warmup`
    steps, then cosine decay to `min_ratio` at `total` steps, flat after."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if step >= total:
        return min_ratio
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_ratio)


def build_optimizer(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    device: torch.device,
    lr_scales: Mapping[str, float] | None = None,
) -> torch.optim.AdamW:
    """AdamW. nanoGPT's rule: decay every matrix (weights, embeddings), not biases and layer
    norms. `lr_scales` maps a parameter-name prefix to a multiple of `lr` for those parameters
    (a new head on a pre-trained encoder learns faster than the encoder under it)."""
    scales = dict(lr_scales or {})

    def scale_of(name: str) -> float:
        return next((v for prefix, v in scales.items() if name.startswith(prefix)), 1.0)

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = []
    for scale in sorted({scale_of(n) for n, _ in named}):
        params = [p for n, p in named if scale_of(n) == scale]
        groups += [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay,
             "lr": lr * scale},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "lr": lr * scale},
        ]  # fmt: skip
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=device.type == "cuda")


class PageStream:
    """Pages in a new permutation every epoch, fixed by (seed, epoch); `position` (pages handed
    out so far) is the whole state, so a resumed run draws exactly the pages it would have."""

    def __init__(self, num_pages: int, seed: int, position: int = 0):
        if num_pages <= 0:
            raise ValueError("no pages to train on")
        self.num_pages, self.seed, self.position = num_pages, seed, position
        self._epoch, self._order = -1, np.arange(0)

    def next_indices(self, count: int) -> list[int]:
        indices = []
        for _ in range(count):
            epoch, offset = divmod(self.position, self.num_pages)
            if epoch != self._epoch:
                self._epoch = epoch
                self._order = np.random.default_rng([self.seed, epoch]).permutation(self.num_pages)
            indices.append(int(self._order[offset]))
            self.position += 1
        return indices

    @property
    def epoch(self) -> float:
        return self.position / self.num_pages


def publish_model(
    model: DocFormerV2PreTrainedModel, processor: DocFormerV2Processor, out_dir: Path
) -> None:
    """save_pretrained into out_dir file by file through a temporary folder, so a reader never
    finds a half-written weights file there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    temporary = out_dir / ".publish.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary)
    processor.save_pretrained(temporary)
    for file in sorted(temporary.iterdir()):
        os.replace(file, out_dir / file.name)
    temporary.rmdir()


def find_checkpoint(out_dir: str | Path) -> Path | None:
    """OUT/checkpoint, or the previous one when a run died between the two renames that swap a
    new checkpoint in."""
    for name in (CHECKPOINT_DIR, f".{CHECKPOINT_DIR}.old"):
        candidate = Path(out_dir) / name
        if (candidate / STATE_FILE).is_file():
            return candidate
    return None


def save_checkpoint(
    out_dir: Path,
    model: DocFormerV2ForPreTraining,
    processor: DocFormerV2Processor,
    state: dict[str, Any],
) -> None:
    """Writes OUT/checkpoint atomically: a complete temporary folder, then renames."""
    final = out_dir / CHECKPOINT_DIR
    temporary, old = out_dir / f".{CHECKPOINT_DIR}.tmp", out_dir / f".{CHECKPOINT_DIR}.old"
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary)
    processor.save_pretrained(temporary)
    torch.save(state, temporary / STATE_FILE)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    temporary.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def rng_states() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def read_log(path: Path, up_to_step: int | None = None) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if up_to_step is None or r["step"] <= up_to_step]


def truncate_log(path: Path, up_to_step: int) -> None:
    """Drops log lines written after the checkpoint we resume from: those steps run again."""
    kept = read_log(path, up_to_step)
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def print_record(record: dict[str, Any]) -> None:
    """One plain line per logged step, flushed, for terminals and `nohup` logs alike."""
    losses = " ".join(
        f"{key} {record[key]:.4f}" for key in LOSS_KEYS if record.get(key) is not None
    )
    print(
        f"step {record['step']:>7} | {losses} | lr {record['lr']:.2e} | "
        f"{record['tokens_per_s']:,.0f} tok/s | {record['elapsed_s']:.0f} s",
        flush=True,
    )


# --- model and processor ---------------------------------------------------------------------


def build_model(
    *,
    checkpoint: Path | None,
    init_model_dir: str | Path | None,
    preset: str,
    config_overrides: dict[str, Any] | None,
    tokenizer: PreTrainedTokenizerBase | str | Path | None,
    vocab_size: int,
    pages: Sequence[TrainingPage],
    seed: int,
) -> tuple[DocFormerV2ForPreTraining, DocFormerV2Processor]:
    """Where the weights come from: the run's own checkpoint (resume) > `init_model_dir`
    (continue pre-training a model, with its tokenizer and processor) > a new model of
    `preset` with `tokenizer` (a tokenizer, a folder, or None: train one on the pages' text)."""
    source = checkpoint or init_model_dir
    if source is not None:
        model = DocFormerV2ForPreTraining.from_pretrained(source)
        return model, DocFormerV2Processor.from_pretrained(source)
    if tokenizer is None:
        from docformer.tokenization import train_tokenizer

        tokenizer = train_tokenizer(corpus_texts_of_pages(pages), vocab_size)
    elif isinstance(tokenizer, str | Path):
        from docformer.tokenization import load_tokenizer

        tokenizer = load_tokenizer(tokenizer)
    config = DocFormerV2Config.from_preset(
        preset, **{**(config_overrides or {}), "vocab_size": len(tokenizer)}
    )
    torch.manual_seed(seed)  # the initial weights depend on the seed only
    return DocFormerV2ForPreTraining(config), DocFormerV2Processor.from_config(config, tokenizer)


# --- the loop --------------------------------------------------------------------------------


def pretrain(
    pages: Sequence[TrainingPage],
    out_dir: str | Path,
    *,
    init_model_dir: str | Path | None = None,
    preset: str = "tiny",
    config_overrides: dict[str, Any] | None = None,
    steps: int = 1000,
    batch_size: int = 8,
    lr: float = 1e-3,
    warmup: int = 100,
    weight_decay: float = 0.01,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    log: LogFn | None = None,
    tokenizer: PreTrainedTokenizerBase | str | Path | None = None,
    vocab_size: int = 8000,
    save_every: int = 200,
    log_every: int = 10,
    corpus_sizes: dict[str, int] | None = None,
) -> PretrainResult:
    """Pre-trains on `pages` ((image or None, OCRResult) pairs; a lazy `CorpusPages` works) for
    `steps` optimizer steps, resuming from OUT/checkpoint when there is one. `log` receives each
    logged record (default: a printed line). Returns the result summary; the model is in OUT."""
    started = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or print_record
    torch_device = resolve_device(device)
    seed_everything(seed)

    checkpoint = find_checkpoint(out_dir)
    model, processor = build_model(
        checkpoint=checkpoint,
        init_model_dir=init_model_dir,
        preset=preset,
        config_overrides=config_overrides,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        pages=pages,
        seed=seed,
    )
    model.to(torch_device).train()
    optimizer = build_optimizer(model, lr, weight_decay, torch_device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup, steps)
    )
    collator = PretrainingCollator(processor, seed=seed)
    stream = PageStream(len(pages), seed)
    step, wall_before = 0, 0.0
    log_path = out_dir / LOG_FILE

    if checkpoint is not None:
        state = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, wall_before, preset = state["step"], state["wall_seconds"], state["preset"]
        stream.position = state["pages_seen"]
        collator.rng.bit_generator.state = state["collator_rng"]
        restore_rng_states(state["rng"])
        truncate_log(log_path, step)
        logger.info("resuming from %s at step %d", checkpoint, step)
    else:
        log_path.write_text("")
        publish_model(model, processor, out_dir)  # the tokenizer is in OUT from the start
        # Train with the tokenizer exactly as `from_pretrained` gives it back: that is what a
        # resumed run, fine-tuning and extraction will use (a reloaded tokenizer is not always
        # identical to the freshly trained object).
        processor = DocFormerV2Processor.from_pretrained(out_dir)
        collator = PretrainingCollator(processor, seed=seed)

    def training_state() -> dict[str, Any]:
        return {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "pages_seen": stream.position,
            "collator_rng": collator.rng.bit_generator.state,
            "rng": rng_states(),
            "wall_seconds": wall_before + time.perf_counter() - started,
            "preset": preset,
        }

    interval_losses: dict[str, list[float]] = {key: [] for key in LOSS_KEYS}
    interval_tokens, interval_start = 0, time.perf_counter()
    while step < steps:
        # Build the batch on the CPU: the collator corrupts spans and samples line pairs.
        batch_pages = [pages[i] for i in stream.next_indices(batch_size)]
        batch = collator(batch_pages)
        batch.pop("word_ids")
        interval_tokens += int(batch["attention_mask"].sum())
        batch = {key: value.to(torch_device) for key, value in batch.items()}

        output = model(**batch)
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        for key in LOSS_KEYS:
            value = getattr(output, key)
            if value is not None:
                interval_losses[key].append(float(value.detach()))

        if step % log_every == 0 or step == steps:
            now = time.perf_counter()
            record = {
                "step": step,
                **{k: float(np.mean(v)) if v else None for k, v in interval_losses.items()},
                "lr": scheduler.get_last_lr()[0],
                "tokens_per_s": interval_tokens / max(now - interval_start, 1e-9),
                "epoch": round(stream.epoch, 4),
                "elapsed_s": wall_before + now - started,
            }
            with log_path.open("a") as file:
                file.write(json.dumps(record) + "\n")
            log(record)
            interval_losses = {key: [] for key in LOSS_KEYS}
            interval_tokens, interval_start = 0, time.perf_counter()
        if step % save_every == 0 or step == steps:
            save_checkpoint(out_dir, model, processor, training_state())
            publish_model(model, processor, out_dir)

    if checkpoint is not None and step == steps and not (out_dir / SUMMARY_FILE).exists():
        publish_model(model, processor, out_dir)  # resumed a finished run that died before the end
    wall_seconds = wall_before + time.perf_counter() - started
    curve = read_log(log_path)
    final = {k: curve[-1][k] for k in LOSS_KEYS if curve and curve[-1].get(k) is not None}
    dump_json(
        out_dir / SUMMARY_FILE,
        {
            "preset": None if init_model_dir else preset,
            "init_model_dir": str(init_model_dir) if init_model_dir else None,
            "config": {
                k: model.config.to_dict()[k]
                for k in (
                    "d_model",
                    "num_layers",
                    "num_decoder_layers",
                    "num_heads",
                    "d_ff",
                    "image_size",
                    "max_text_tokens",
                    "vocab_size",
                )
            },  # fmt: skip
            "parameters": sum(p.numel() for p in model.parameters()),
            "steps": step,
            "batch_size": batch_size,
            "lr": lr,
            "warmup": warmup,
            "weight_decay": weight_decay,
            "seed": seed,
            "device": str(torch_device),
            "threads": torch.get_num_threads(),
            "corpus": corpus_sizes or describe_sizes(pages),
            "epochs": round(stream.epoch, 4),
            "wall_seconds": wall_seconds,
            "final_losses": final,
        },
    )
    return PretrainResult(out_dir, step, final, curve, wall_seconds)
