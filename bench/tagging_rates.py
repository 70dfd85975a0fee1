"""How fast the tagging head learns at a given encoder and head learning rate: a short run on
part of a synthetic corpus, then each BIO tag's word accuracy on the part held out.

    python -m bench.tagging_rates --corpus .build/checkpoint/corpus --encoder-lr 5e-4 \
        --head-lr 5e-3 --steps 100 [--documents 500] [--model DIR] [--balance]

`--balance` weighs each tag's loss the way `docformer finetune` does by default
(`docformer.training.tagging.tag_loss_weights`: the square root of how much rarer the tag is
than O, at most 10x): whether the rare single-word tags (B-date, B-total) are learned sooner.

It measured the head's rate (`docformer.training.tagging.HEAD_LR_SCALE`): a few minutes a
setting on 2 CPU cores, against hours for a whole fine-tuning run. When --corpus does not exist
it says so and exits 0.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

FIELDS = ("company", "date", "address", "total", "invoice_number", "tax", "currency")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path(".build/checkpoint/corpus"))
    parser.add_argument("--model", help="base checkpoint (default: the shipped one)")
    parser.add_argument("--encoder-lr", type=float, required=True)
    parser.add_argument("--head-lr", type=float, required=True)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--documents", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--balance", action="store_true", help="weigh rare tags' loss up")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"{args.corpus} does not exist: skipped")
        return 0

    import numpy as np
    import torch

    from docformer.checkpoints import check_model_dir
    from docformer.models.docformerv2 import DocFormerV2Processor
    from docformer.training.data import load_pages, split_examples
    from docformer.training.pretrain import build_optimizer
    from docformer.training.tagging import (
        build_tagging_rows,
        collate_tagging_rows,
        tag_loss_weights,
        tagging_loss,
        tagging_model,
    )

    torch.set_num_threads(args.threads)
    base = check_model_dir(args.model)
    processor = DocFormerV2Processor.from_pretrained(base)
    examples = load_pages([str(args.corpus)], None, args.documents, image_size=processor.image_size)
    train, held_out = split_examples(examples, 0.03, 0)
    rows, _ = build_tagging_rows(processor, train, FIELDS)
    torch.manual_seed(0)
    model = tagging_model(base, FIELDS).train()
    optimizer = build_optimizer(
        model, args.encoder_lr, 0.01, torch.device("cpu"),
        lr_scales={"classifier.": args.head_lr / args.encoder_lr},
    )  # fmt: skip
    weights = None
    if args.balance:
        weights = tag_loss_weights(rows, len(model.config.tag_names))
        print(f"tag loss weights: {[round(w, 2) for w in weights.tolist()]}")
    rng, started, losses = np.random.default_rng(0), time.perf_counter(), []
    for step in range(1, args.steps + 1):
        batch = collate_tagging_rows(processor, [rows[i] for i in rng.choice(len(rows), 8, False)])
        labels = batch.pop("labels")
        loss = tagging_loss(model(**batch).logits, labels, weights)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if step % 20 == 0:
            elapsed = time.perf_counter() - started
            print(f"step {step} loss {np.mean(losses[-20:]):.4f} {elapsed:.0f} s", flush=True)

    model.eval()
    held_rows, _ = build_tagging_rows(processor, held_out, FIELDS)
    counts: collections.Counter = collections.Counter()
    for start in range(0, len(held_rows), 8):
        batch = collate_tagging_rows(processor, held_rows[start : start + 8])
        with torch.no_grad():
            predicted = model(**batch).logits.argmax(-1)
        labelled = batch["labels"] != -100
        for gold, guess in zip(
            batch["labels"][labelled].tolist(), predicted[labelled].tolist(), strict=True
        ):
            counts[gold, "words"] += 1
            counts[gold, "right"] += gold == guess
    tags = model.config.tag_names
    accuracy = {
        tags[t]: round(counts[t, "right"] / counts[t, "words"], 2)
        for t in range(len(tags))
        if counts[t, "words"]
    }
    print(f"held-out word accuracy per tag: {accuracy}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
