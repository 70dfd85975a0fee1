"""The `docformer finetune` command: reads labelled folders, splits off a validation set and
runs `docformer.training.finetune.finetune` (either head).

    docformer finetune --model DIR --data DIR... --out DIR [--val-split 0.2] [--fields a,b,...] \
        [--epochs 20] [--max-steps N] [--batch-size 8] [--lr 5e-4] [--warmup N] \
        [--eval-every N] [--patience 3] [--objective page|vocabulary] [--ocr-cache DIR] \
        [--head auto|tagging|generation] [--no-balance-tags] [--engine-ocr] [--resume] \
        [--seed 0] [--device auto] [--threads N] [--limit N]
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from docformer.models.docformerv2 import DocFormerV2Processor
from docformer.training.finetune import HEADS, OBJECTIVES, finetune


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="docformer finetune", description="Fine-tune key-value extraction on labelled folders."
    )
    parser.add_argument("--model", help="base model folder (default: the shipped checkpoint)")
    parser.add_argument("--data", nargs="+", required=True, help="labelled folders")
    parser.add_argument("--out", required=True, help="folder for the fine-tuned model")
    parser.add_argument("--val-split", type=float, default=0.2)
    parser.add_argument("--fields", help="comma-separated fields (default: those in the labels)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, help="warm-up steps (default: a tenth, at most 100)")
    parser.add_argument(
        "--eval-every", type=int, help="steps between evaluations (default: an epoch)"
    )
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument(
        "--objective", choices=OBJECTIVES, default="page",
        help="normalise the loss over the tokens the page allows (page) or over the whole "
        "vocabulary",
    )  # fmt: skip
    parser.add_argument(
        "--head", choices=HEADS, default="auto",
        help="tagging: label OCR words over the fields; generation: write the answers; auto: "
        "the base checkpoint's head (generation for a pre-trained one)",
    )  # fmt: skip
    parser.add_argument(
        "--balance-tags", action=argparse.BooleanOptionalAction, default=True,
        help="tagging: weigh each tag's loss by how rare it is (default) or train on the plain loss",
    )  # fmt: skip
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted tagging run in --out"
    )
    parser.add_argument("--ocr-cache", help="folder caching OCR of documents without .ocr.json")
    parser.add_argument(
        "--engine-ocr", action="store_true",
        help="read every page with the OCR engine, ignoring .ocr.json files (train on what the "
        "OCR reads of synthetic pages, not on the renderer's words); cached in --ocr-cache",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, help="use at most this many documents")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    from docformer.checkpoints import CheckpointNotFoundError, check_model_dir
    from docformer.training.data import load_pages, split_examples

    try:
        model_dir = check_model_dir(args.model)
    except CheckpointNotFoundError as error:
        print(f"docformer finetune: {error}", flush=True)
        return 2
    processor = DocFormerV2Processor.from_pretrained(model_dir)
    started = time.perf_counter()
    examples = load_pages(
        args.data, args.ocr_cache, args.limit, image_size=processor.image_size,
        ocr_files=not args.engine_ocr, progress=lambda message: print(message, flush=True),
    )  # fmt: skip
    train, val = split_examples(examples, args.val_split, args.seed)
    print(
        f"data: {len(examples)} documents ({len(train)} train, {len(val)} validation), "
        f"read in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    result = finetune(
        model_dir,
        train,
        val,
        args.out,
        fields=[f.strip() for f in args.fields.split(",") if f.strip()] if args.fields else None,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        eval_every=args.eval_every,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        objective=args.objective,
        head=args.head,
        balance_tags=args.balance_tags,
        resume=args.resume,
    )
    print(
        f"done: {result.steps} steps in {result.wall_seconds:.0f} s, best F1 {result.best_f1:.4f} "
        f"-> {result.out_dir}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
