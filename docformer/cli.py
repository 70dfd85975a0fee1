"""The `docformer` command. Each subcommand lives beside the code it drives and is imported
only when invoked, so `docformer --help` does not pay for importing torch or PaddleOCR."""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module with `main(argv: list[str]) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ocr": (
        "docformer.ocr.cli",
        "read documents: their OCR words as text, JSON, ALTO, hOCR or a searchable PDF",
    ),
    "synth": ("docformer.synth.cli", "generate a synthetic labelled corpus"),
    "tokenizer": ("docformer.tokenization", "train the tokenizer on a text corpus"),
    "pretrain": (
        "docformer.training.pretrain_cli",
        "pre-train DocFormerv2 on the three self-supervised tasks",
    ),
    "finetune": (
        "docformer.training.finetune_cli",
        "fine-tune key-value extraction on a labelled folder",
    ),
    "extract": ("docformer.extraction_cli", "extract fields from documents as JSON"),
    "eval": ("docformer.evaluation", "precision, recall, F1 and ANLS on a labelled folder"),
    "export": ("docformer.checkpoints.export", "write a trained model as a compact checkpoint"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        print("usage: docformer COMMAND [ARGS...]\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:<{width}}  {help_text}")
        return 0 if not argv or argv[0] in {"-h", "--help"} else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
