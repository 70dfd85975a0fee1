"""The checkpoint shipped inside the package: DocFormerv2 (tiny preset) fine-tuned on receipts.

`docformer/checkpoints/receipts-tiny/` is a `save_pretrained` folder (config.json,
model.safetensors, tokenizer files, processor_config.json, metrics.json). It is package data,
so a fresh `pip install` finds it with no path to configure.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "docformerv2-receipts-tiny"
DEFAULT_CHECKPOINT = "receipts-tiny"
# Files without which a folder cannot be loaded as an extraction model.
REQUIRED_FILES = ("config.json", "model.safetensors", "processor_config.json")


class CheckpointNotFoundError(FileNotFoundError):
    """A model folder that is missing or lacks the files a model needs."""


def default_model_dir() -> Path:
    """Where the shipped checkpoint lives (whether or not it is there; see `check_model_dir`)."""
    return Path(__file__).resolve().parent / DEFAULT_CHECKPOINT


def check_model_dir(model_dir: str | Path | None = None) -> Path:
    """The resolved model folder; raises `CheckpointNotFoundError` saying what is missing."""
    directory = Path(model_dir).expanduser().resolve() if model_dir else default_model_dir()
    if not directory.is_dir():
        hint = (
            " The shipped checkpoint is not installed: train one with `docformer finetune` "
            "and pass its folder with --model, or reinstall the package with its data."
            if model_dir is None
            else ""
        )
        raise CheckpointNotFoundError(f"model folder {directory} does not exist.{hint}")
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise CheckpointNotFoundError(
            f"model folder {directory} lacks {', '.join(missing)}; it must be a folder written "
            "by save_pretrained (model and processor)."
        )
    return directory


__all__ = [
    "DEFAULT_MODEL_NAME",
    "CheckpointNotFoundError",
    "check_model_dir",
    "default_model_dir",
]
