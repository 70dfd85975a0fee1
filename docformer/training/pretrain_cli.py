"""The `docformer pretrain` command: indexes the corpus, trains a tokenizer when none is given
(and no model or checkpoint brings one), and runs `docformer.training.pretrain.pretrain`.

    docformer pretrain --config tiny --corpus data/pretrain --steps 20000 --out runs/tiny \
        [--batch-size 8] [--lr 1e-3] [--warmup 100] [--tokenizer DIR] [--vocab-size 8000] \
        [--init MODEL_DIR] [--save-every 200] [--log-every 10] [--seed 0] [--device auto] \
        [--threads N] [--limit N] [--ocr-cache DIR] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from docformer.training.pretrain import find_checkpoint, pretrain


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is JSON when it parses (64, [64, 48], true), else a string."""
    overrides = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="docformer pretrain",
        description="Pre-train DocFormerv2 on the three self-supervised tasks.",
    )
    parser.add_argument("--config", default="tiny", help="model preset: tiny, small or base")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field of the preset (JSON value), e.g. --set d_model=128",
    )  # fmt: skip
    parser.add_argument(
        "--corpus", nargs="+", required=True, help="labelled folders (labels optional)"
    )
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument(
        "--out", required=True, help="output folder (resumes when it holds a checkpoint)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--tokenizer", help="folder of a trained tokenizer (default: train one)")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--init", help="continue pre-training this model folder")
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, help="use at most this many documents")
    parser.add_argument("--ocr-cache", help="folder caching OCR of documents without .ocr.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # transformers draws a progress bar for every save; in a `nohup` log that is pure noise.
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    from docformer.training.data import load_corpus

    out_dir = Path(args.out)
    started = time.perf_counter()
    # Images stay full size here: the processor shrinks each page when its batch is built.
    pages = load_corpus(
        args.corpus,
        args.ocr_cache,
        args.limit,
        image_size=None,
        progress=lambda m: print(m, flush=True),
    )
    print(
        f"corpus: {pages.documents} documents, {len(pages)} pages "
        f"({time.perf_counter() - started:.1f} s to index)",
        flush=True,
    )
    if not len(pages):
        print("no pages with text in the corpus", file=sys.stderr)
        return 1

    tokenizer: PreTrainedTokenizerBase | str | None = args.tokenizer
    if tokenizer is None and args.init is None and find_checkpoint(out_dir) is None:
        from docformer.tokenization import iter_corpus_texts, train_tokenizer

        tokenizer = train_tokenizer(iter_corpus_texts(args.corpus), args.vocab_size, out_dir)
        print(f"tokenizer: {len(tokenizer)} pieces -> {out_dir}", flush=True)

    result = pretrain(
        pages,
        out_dir,
        init_model_dir=args.init,
        preset=args.config,
        config_overrides=parse_overrides(args.set),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        tokenizer=tokenizer,
        vocab_size=args.vocab_size,
        save_every=args.save_every,
        log_every=args.log_every,
        corpus_sizes={"documents": pages.documents, "pages": len(pages)},
    )
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.final_losses.items())
    print(f"done: {result.steps} steps in {result.wall_seconds:.0f} s ({losses}) -> {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
