"""Model speed: DocFormerv2 extraction against LayoutLMv3 and plain T5 of the same size.

    python -m bench.model_speed [--runs 3] [--threads N] [--presets tiny small] \
        [--batches 1 8 32] [--pages 32] [--quick] [--out bench-results/model_speed.json]

CPU, every preset in `--presets` (random weights, `vocab_size=8000`), pages per second at each
batch size, for three models fed the same synthetic pages (`docformer.synth`, their ground-truth
OCR through `DocFormerV2Processor`, one window of at most 512 text tokens per page, pages sorted
by length before batching as extraction does):

- **DocFormerv2**: extraction = encoder (visual patches + OCR tokens + prompt) and greedy decoding
  with `generate_answers`. Every row decodes exactly `--new-tokens` tokens (default: the median
  length of the true answer of these pages, all fields, `</s>` included): a random model never
  says `</s>` in the right place, so its end-of-sequence id is set out of reach for the
  benchmark, and every model pays for the same answer length.
- **T5**: `transformers.T5ForConditionalGeneration` with the same T5 dimensions and the same
  text ids, without the visual tokens and the spatial and modality embeddings; decoded by the
  same greedy loop (encoder once, one decoder step per token on a key/value cache). The ratio
  DocFormerv2 / T5 is what DocFormerv2's additions cost.
- **LayoutLMv3**: `LayoutLMv3ForTokenClassification` with DocFormerv2's encoder width, depth,
  heads and feed-forward size, about as many image patches (a square image: LayoutLMv3 takes
  square inputs), the same ids and boxes; one forward pass and an argmax over BIO labels of
  the fields. It is encoder-only: that pass *is* its extraction (label each token, then join
  the tagged tokens), so the comparison is of two ways to extract, not of equal networks.

The processor's own time (tokenize + resize, per page) is a row of its own; the model rows time
the models only, on batches built before the clock starts. Each figure is the median of `--runs`
timed passes over `--pages` pages, after one untimed warm-up batch; in each run the three models
take turns, so a busy machine slows them alike and the ratios are taken run by run.

GPU (when `torch.cuda.is_available()`): `small` and `base` under bfloat16 autocast (the model's
own `autocast_bf16`), batch sizes doubling from 8 until memory runs out (or `--max-gpu-batch`):
pages per second and model FLOPs utilisation, and fine-tuning steps per second (forward with
labels, backward, AdamW). MFU = analytic FLOPs of the shapes computed (padding included, see
`extraction_flops`) / time / the GPU's dense bf16 peak (`--peak-tflops`, 989 for an H100 SXM).
Without a GPU the section is recorded as skipped.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from bench.report import BenchResult, add_common_arguments

DEFAULT_PEAK_TFLOPS = 989.0  # H100 SXM, bf16 dense (no sparsity)
VOCAB_SIZE = 8000


# --- inputs -----------------------------------------------------------------------------------


def synthetic_pages(count: int, seed: int = 11) -> list:
    """Receipts and invoices in turn, rendered with scan noise, with their exact OCR."""
    from docformer.synth import render_document

    return [
        render_document(("receipt", "invoice")[i % 2], seed=seed, index=i) for i in range(count)
    ]


def benchmark_tokenizer(pages: Sequence, path: str | None):
    """`--tokenizer`, else the shipped checkpoint's, else one trained here on synthetic text
    (more pages than are timed, so it is not fitted to exactly them)."""
    from docformer.checkpoints import default_model_dir
    from docformer.generation import DEFAULT_FIELDS, build_target
    from docformer.tokenization import load_tokenizer, train_tokenizer

    if path:
        return load_tokenizer(path), path
    shipped = default_model_dir()
    if (shipped / "tokenizer.json").is_file():
        return load_tokenizer(shipped), str(shipped)
    from docformer.synth import render_document

    corpus = list(pages) + [
        render_document(("receipt", "invoice", "letter")[i % 3], seed=97, index=i, degrade=False)
        for i in range(150)
    ]
    texts = [" ".join(w.text for w in line) for d in corpus for line in d.ocr.lines()]
    texts += [build_target(d.fields, DEFAULT_FIELDS).replace("<extra_id_99>", " ") for d in corpus]
    return train_tokenizer(texts, vocab_size=VOCAB_SIZE), "trained here on 150 synthetic pages"


@dataclass
class Batches:
    """The same pages, batched once per model: {model name: its inputs, batch by batch}."""

    inputs: dict[str, list[dict[str, torch.Tensor]]]
    pages: int


def build_batches(processor, square_processor, pages: Sequence, prompt: str, batch: int) -> Batches:
    """Pages sorted by token count (as extraction sorts its windows) and cut into batches."""
    lengths = [len(processor.tokenize_page(p.ocr)) for p in pages]
    order = sorted(range(len(pages)), key=lengths.__getitem__)
    docformer, t5, layoutlmv3 = [], [], []
    for start in range(0, len(order), batch):
        chosen = [pages[i] for i in order[start : start + batch]]
        images, ocrs = [p.image for p in chosen], [p.ocr for p in chosen]
        encoded = processor(images, ocrs, prompt)
        encoded.pop("word_ids")
        docformer.append(dict(encoded))
        t5.append({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})
        layoutlmv3.append(
            {
                "input_ids": encoded["input_ids"],
                "bbox": encoded["bbox"],
                "attention_mask": encoded["attention_mask"],
                "pixel_values": square_processor.pixel_values(images),
            }
        )
    return Batches({"DocFormerv2": docformer, "T5": t5, "LayoutLMv3": layoutlmv3}, len(pages))


# --- the three models -------------------------------------------------------------------------


def docformer_model(config):
    from docformer.models.docformerv2 import DocFormerV2ForConditionalGeneration

    model = DocFormerV2ForConditionalGeneration(config).eval()
    # As `min_new_tokens` does in transformers' generate: the end-of-sequence logit is masked,
    # so generation never stops early and every row decodes the full length.
    eos = config.eos_token_id

    def never_end(module, inputs, logits):
        logits[..., eos] = float("-inf")
        return logits

    model.lm_head.register_forward_hook(never_end)
    return model


def t5_model(config):
    """A plain T5 with DocFormerv2's T5 dimensions (no visual branch, no spatial embeddings)."""
    from transformers import T5Config, T5ForConditionalGeneration

    t5_config = T5Config(
        vocab_size=config.vocab_size,
        d_model=config.d_model,
        d_kv=config.d_kv,
        d_ff=config.d_ff,
        num_layers=config.num_layers,
        num_decoder_layers=config.num_decoder_layers,
        num_heads=config.num_heads,
        relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance,
        feed_forward_proj=config.feed_forward_proj,
        dropout_rate=0.0,
        pad_token_id=config.pad_token_id,
        eos_token_id=config.eos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        tie_word_embeddings=config.tie_word_embeddings,
    )
    return T5ForConditionalGeneration(t5_config).eval()


def layoutlmv3_square_side(config) -> int:
    """Side of LayoutLMv3's square input with about DocFormerv2's number of visual patches."""
    per_side = max(1, round(math.sqrt(config.num_visual_tokens)))
    return per_side * config.patch_size


def layoutlmv3_model(config, num_labels: int):
    """LayoutLMv3ForTokenClassification with DocFormerv2's encoder shape."""
    from transformers import LayoutLMv3Config, LayoutLMv3ForTokenClassification

    # LayoutLMv3 concatenates x0, y0, x1, y1 (coordinate_size each) and width, height
    # (shape_size each) into one hidden vector: 4 * coordinate + 2 * shape = hidden size.
    coordinate = round(config.d_model / 6)
    shape = (config.d_model - 4 * coordinate) // 2
    lv3_config = LayoutLMv3Config(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=config.d_ff,
        coordinate_size=coordinate,
        shape_size=shape,
        input_size=layoutlmv3_square_side(config),
        patch_size=config.patch_size,
        pad_token_id=config.pad_token_id,
        max_position_embeddings=config.max_text_tokens + 2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=num_labels,
    )
    return LayoutLMv3ForTokenClassification(lv3_config).eval()


def t5_greedy(model, input_ids, attention_mask, new_tokens: int) -> torch.Tensor:
    """The loop of `generate_answers` for a plain T5: encoder once, then one cached decoder step
    per token with the softmax probability of each choice (what extraction needs)."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
    cache = EncoderDecoderCache(
        DynamicCache(config=model.config), DynamicCache(config=model.config)
    )
    next_input = input_ids.new_full((input_ids.size(0), 1), model.config.decoder_start_token_id)
    tokens = []
    for _ in range(new_tokens):
        out = model(
            encoder_outputs=encoder_outputs,
            attention_mask=attention_mask,
            decoder_input_ids=next_input,
            past_key_values=cache,
            use_cache=True,
        )
        cache = out.past_key_values
        _, token = out.logits[:, -1].float().softmax(-1).max(-1)
        tokens.append(token)
        next_input = token[:, None]
    return torch.stack(tokens, 1)


def docformer_extract(model, new_tokens: int, batch: dict):
    return model.generate_answers(**batch, max_new_tokens=new_tokens)


def t5_extract(model, new_tokens: int, batch: dict):
    return t5_greedy(model, batch["input_ids"], batch["attention_mask"], new_tokens)


def layoutlmv3_extract(model, batch: dict):
    return model(**batch).logits.argmax(-1)


# --- timing -----------------------------------------------------------------------------------


def timed_pass(
    run: Callable[[dict], object], batches: Sequence[dict], sync: Callable[[], None]
) -> float:
    start = time.perf_counter()
    for batch in batches:
        run(batch)
    sync()
    return time.perf_counter() - start


def no_sync() -> None:
    return None


def cpu_section(result: BenchResult, args, pages, tokenizer) -> None:
    from docformer.generation import DEFAULT_FIELDS, build_prompt
    from docformer.models.docformerv2 import DocFormerV2Config, DocFormerV2Processor

    prompt = build_prompt(DEFAULT_FIELDS)
    num_labels = 2 * len(DEFAULT_FIELDS) + 1  # B- and I- per field, and O
    for preset in args.presets:
        config = DocFormerV2Config.from_preset(preset, vocab_size=VOCAB_SIZE, dropout_rate=0.0)
        processor = DocFormerV2Processor.from_config(config, tokenizer)
        side = layoutlmv3_square_side(config)
        square = DocFormerV2Processor(tokenizer, image_size=(side, side))
        torch.manual_seed(0)
        models = {
            "DocFormerv2": docformer_model(config),
            "T5": t5_model(config),
            "LayoutLMv3": layoutlmv3_model(config, num_labels),
        }
        params = {name: sum(p.numel() for p in m.parameters()) / 1e6 for name, m in models.items()}
        result.figures[f"{preset}: parameters (M)"] = ", ".join(
            f"{name} {value:.1f}" for name, value in params.items()
        )
        result.figures[f"{preset}: visual tokens"] = (
            f"DocFormerv2 {config.num_visual_tokens} ({config.image_size[0]}x{config.image_size[1]}"
            f" px, {config.patch_size} px patches), LayoutLMv3 "
            f"{(side // config.patch_size) ** 2} + CLS ({side}x{side} px)"
        )
        new_tokens = args.new_tokens
        runners = {
            "DocFormerv2": partial(docformer_extract, models["DocFormerv2"], new_tokens),
            "T5": partial(t5_extract, models["T5"], new_tokens),
            "LayoutLMv3": partial(layoutlmv3_extract, models["LayoutLMv3"]),
        }
        for batch_size in args.batches:
            selected = [pages[i % len(pages)] for i in range(max(args.pages, batch_size))]
            start = time.perf_counter()
            batches = build_batches(processor, square, selected, prompt, batch_size)
            processor_seconds = time.perf_counter() - start
            threads = f"{args.threads} thread{'s' * (args.threads != 1)}"
            group = f"{preset}, CPU, {threads}, batch {batch_size}"
            seconds: dict[str, list[float]] = {name: [] for name in models}
            with torch.inference_mode():
                for name, run in runners.items():  # warm-up: allocations, lazy initialisation
                    run(batches.inputs[name][0])
                for run_index in range(args.runs):
                    # Rotate who goes first, so none always follows the same neighbour.
                    names = list(runners)
                    names = names[run_index % 3 :] + names[: run_index % 3]
                    for name in names:
                        elapsed = timed_pass(runners[name], batches.inputs[name], no_sync)
                        seconds[name].append(elapsed)
                    print(
                        f"{group}, run {run_index + 1}: "
                        + ", ".join(f"{n} {batches.pages / s[-1]:.2f} pages/s" for n, s in seconds.items()),
                        flush=True,
                    )  # fmt: skip
            text_tokens = (
                sum(int(b["attention_mask"].sum()) for b in batches.inputs["T5"]) / batches.pages
            )
            result.add(
                group,
                "DocFormerv2 extraction",
                "pages/s",
                [batches.pages / s for s in seconds["DocFormerv2"]],
                baseline="T5 extraction",
                detail=f"{text_tokens:.0f} text + {config.num_visual_tokens} visual tokens/page, "
                f"{new_tokens} tokens decoded",
            )
            result.add(
                group,
                "T5 extraction",
                "pages/s",
                [batches.pages / s for s in seconds["T5"]],
                detail=f"{text_tokens:.0f} text tokens/page, {new_tokens} tokens decoded",
            )
            result.add(
                group,
                "LayoutLMv3 token classification",
                "pages/s",
                [batches.pages / s for s in seconds["LayoutLMv3"]],
                detail="one encoder pass, no decoding",
            )
            result.add(
                group,
                "processor (tokenize + resize)",
                "pages/s",
                [batches.pages / processor_seconds],
                detail="one pass, not repeated",
            )


# --- GPU --------------------------------------------------------------------------------------


def encoder_flops(config, text_len: int) -> float:
    """Forward FLOPs of DocFormerv2's encoder for one row of `text_len` text positions.

    Multiply-adds count 2. Per layer over S = visual + text positions: the Q, K, V, O
    projections 2*S*4*d*inner, the feed-forward 2*S*m*d*d_ff (m = 3 matrices when gated,
    else 2), attention scores and weighted sum 4*S^2*inner; plus the patch projection
    2*visual*(channels*patch^2)*d. Norms, softmax, embeddings and biases are left out (small).
    """
    d, inner, d_ff = config.d_model, config.num_heads * config.d_kv, config.d_ff
    ff_matrices = 3 if config.is_gated_act else 2
    positions = config.num_visual_tokens + text_len
    per_layer = 2 * positions * (4 * d * inner + ff_matrices * d * d_ff) + 4 * positions**2 * inner
    patches = 2 * config.num_visual_tokens * config.num_channels * config.patch_size**2 * d
    return config.num_layers * per_layer + patches


def decoder_flops(config, encoder_positions: int, target_len: int) -> float:
    """Forward FLOPs of the decoder producing `target_len` tokens for one row.

    Per layer: cross-attention keys and values of the encoder states once (2*S*2*d*inner);
    then per token t (1-based): self-attention projections 2*4*d*inner and scores 4*t*inner,
    cross-attention query and output 2*2*d*inner and scores 4*S*inner, feed-forward
    2*m*d*d_ff; plus the LM head 2*d*vocab per token. The same count holds for teacher-forced
    training (every position computed at once) and for cached greedy decoding.
    """
    d, inner, d_ff = config.d_model, config.num_heads * config.d_kv, config.d_ff
    ff_matrices = 3 if config.is_gated_act else 2
    S, T = encoder_positions, target_len
    per_layer = 2 * S * 2 * d * inner
    per_layer += T * (
        2 * 4 * d * inner + 2 * 2 * d * inner + 4 * S * inner + 2 * ff_matrices * d * d_ff
    )
    per_layer += 4 * inner * T * (T + 1) / 2
    return config.num_decoder_layers * per_layer + T * 2 * d * config.vocab_size


def extraction_flops(config, text_len: int, new_tokens: int) -> float:
    """FLOPs of extracting one row: encoder + `new_tokens` decoder steps (padding included when
    `text_len` is the padded length, which is what the hardware computes)."""
    return encoder_flops(config, text_len) + decoder_flops(
        config, config.num_visual_tokens + text_len, new_tokens
    )


def gpu_section(result: BenchResult, args, pages, tokenizer, device: str = "cuda") -> None:
    result.figures["GPU peak assumed (TFLOP/s, bf16 dense)"] = args.peak_tflops
    for preset in args.gpu_presets:
        largest = gpu_extraction(result, args, preset, pages, tokenizer, device)
        if largest:
            gpu_training(
                result, args, preset, pages, tokenizer, device, min(largest, args.gpu_train_batch)
            )
        if device == "cuda":
            torch.cuda.empty_cache()


def gpu_batch(processor, pages, prompt: str, size: int, device: str) -> dict[str, torch.Tensor]:
    """`size` rows cycling through `pages`: the pages are processed once and their rows
    repeated, so a batch of thousands costs no more preprocessing than the pages themselves."""
    encoded = processor([p.image for p in pages], [p.ocr for p in pages], prompt)
    encoded.pop("word_ids")
    rows = torch.arange(size) % len(pages)
    return {k: v[rows].to(device) for k, v in encoded.items()}


def gpu_model(preset: str, tokenizer, device: str):
    from docformer.models.docformerv2 import DocFormerV2Config, DocFormerV2Processor

    config = DocFormerV2Config.from_preset(preset, vocab_size=VOCAB_SIZE, dropout_rate=0.0)
    torch.manual_seed(0)
    return docformer_model(config).to(device), DocFormerV2Processor.from_config(config, tokenizer)


def gpu_extraction(result: BenchResult, args, preset: str, pages, tokenizer, device: str) -> int:
    """Extraction at batch sizes doubling until memory runs out; returns the largest that ran."""
    from docformer.generation import DEFAULT_FIELDS, build_prompt

    model, processor = gpu_model(preset, tokenizer, device)
    config, prompt = model.config, build_prompt(DEFAULT_FIELDS)
    sync = torch.cuda.synchronize if device == "cuda" else no_sync
    run = partial(docformer_extract, model, args.new_tokens)
    group = f"{preset}, {device}, bf16 autocast"
    batch_size, largest = args.gpu_start_batch, 0
    while batch_size <= args.max_gpu_batch:
        try:
            batch = gpu_batch(processor, pages, prompt, batch_size, device)
            with torch.inference_mode():
                run(batch)  # warm-up
                seconds = [timed_pass(run, [batch], sync) for _ in range(args.runs)]
        except torch.OutOfMemoryError:
            result.figures[f"{preset}: largest extraction batch"] = (
                f"{largest} ({batch_size} ran out of memory)"
            )
            break
        text_len = batch["input_ids"].size(1)
        del batch
        flops = batch_size * extraction_flops(config, text_len, args.new_tokens)
        pages_per_second = [batch_size / s for s in seconds]
        result.add(group, f"extraction, batch {batch_size}", "pages/s", pages_per_second,
                   detail=f"{text_len} text tokens (padded), {args.new_tokens} decoded")  # fmt: skip
        result.add(group, f"extraction MFU, batch {batch_size}", "%",
                   [100 * flops / s / (args.peak_tflops * 1e12) for s in seconds])  # fmt: skip
        print(
            f"{group}, batch {batch_size}: {statistics.median(pages_per_second):.1f} pages/s",
            flush=True,
        )
        largest, batch_size = batch_size, batch_size * 2
    return largest


def gpu_training(
    result: BenchResult, args, preset: str, pages, tokenizer, device: str, size: int
) -> None:
    """Fine-tuning steps: teacher-forced true answers, every parameter trained with AdamW."""
    from docformer.generation import DEFAULT_FIELDS, build_prompt, build_target

    model, processor = gpu_model(preset, tokenizer, device)
    config = model.config
    sync = torch.cuda.synchronize if device == "cuda" else no_sync
    batch = gpu_batch(processor, pages, build_prompt(DEFAULT_FIELDS), size, device)
    targets = [
        tokenizer(build_target(pages[i % len(pages)].fields, DEFAULT_FIELDS)).input_ids
        for i in range(size)
    ]
    labels = torch.full((size, max(map(len, targets))), -100, dtype=torch.long)
    for row, ids in enumerate(targets):
        labels[row, : len(ids)] = torch.tensor(ids)
    batch["labels"] = labels.to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(b: dict) -> None:
        loss = model(**b).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    try:
        step(batch)  # warm-up: optimizer state, kernels
        seconds = [timed_pass(step, [batch] * args.gpu_train_steps, sync) for _ in range(args.runs)]
    except torch.OutOfMemoryError:
        result.figures[f"{preset}: training"] = f"batch {size} ran out of memory"
        return
    text_len, target_len = batch["input_ids"].size(1), labels.size(1)
    forward = encoder_flops(config, text_len) + decoder_flops(
        config, config.num_visual_tokens + text_len, target_len
    )
    step_flops = 3 * size * forward  # the backward pass costs about twice the forward
    steps = [args.gpu_train_steps / s for s in seconds]
    group = f"{preset}, {device}, bf16 autocast"
    result.add(group, f"fine-tuning, batch {size}", "steps/s", steps,
               detail=f"{text_len} text tokens, {target_len} target tokens, AdamW")  # fmt: skip
    result.add(group, f"fine-tuning MFU, batch {size}", "%",
               [100 * step_flops * s / (args.peak_tflops * 1e12) for s in steps])  # fmt: skip


# --- command ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--pages", type=int, default=32, help="pages per timed run")
    parser.add_argument("--new-tokens", type=int, help="tokens decoded per page (default: the "
                        "median true answer length of the pages)")  # fmt: skip
    parser.add_argument("--tokenizer", help="a tokenizer folder (default: the shipped one)")
    parser.add_argument("--gpu-presets", nargs="+", default=["small", "base"])
    parser.add_argument("--gpu-start-batch", type=int, default=8)
    parser.add_argument("--max-gpu-batch", type=int, default=2048)
    parser.add_argument("--gpu-train-batch", type=int, default=32)
    parser.add_argument("--gpu-train-steps", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=DEFAULT_PEAK_TFLOPS)
    args = parser.parse_args(argv)
    args.runs = args.runs or (2 if args.quick else 3)
    if args.quick:
        args.presets, args.batches, args.pages = ["tiny"], [1, 8], 8

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    result = BenchResult.start("model_speed", "Model speed", args.runs, args.quick)

    from docformer.generation import DEFAULT_FIELDS, build_target

    pages = synthetic_pages(max(args.pages, 8))
    tokenizer, tokenizer_source = benchmark_tokenizer(pages, args.tokenizer)
    answer_lengths = [
        len(tokenizer(build_target(p.fields, DEFAULT_FIELDS)).input_ids) for p in pages
    ]
    if args.new_tokens is None:
        args.new_tokens = int(statistics.median(answer_lengths))
    result.figures["pages"] = (
        f"{len(pages)} synthetic (receipts and invoices in turn), ground-truth OCR, "
        f"one window of at most 512 text tokens each"
    )
    result.figures["tokenizer"] = f"{len(tokenizer)} pieces, {tokenizer_source}"
    result.figures["tokens decoded per page"] = (
        f"{args.new_tokens} (true answers: median {statistics.median(answer_lengths):.0f}, "
        f"{min(answer_lengths)}–{max(answer_lengths)})"
    )

    cpu_section(result, args, pages, tokenizer)
    if torch.cuda.is_available():
        gpu_section(result, args, pages, tokenizer)
    else:
        print("no GPU: skipped")
        result.figures["GPU"] = "no GPU: skipped"

    result.notes = notes(result, args)
    result.publish(args.out)
    return 0


def notes(result: BenchResult, args) -> str:
    """What the figures say, from the figures themselves."""
    parts = []
    costs = []
    for group in result.groups():
        doc = result.find(group, "DocFormerv2 extraction")
        lv3 = result.find(group, "LayoutLMv3 token classification")
        if doc is None:
            continue
        ratio = result.ratio(doc)
        text = f"{group}: {statistics.median(ratio):.2f}× T5's pages/s" if ratio else group
        if lv3 is not None:
            text += f", {doc.median / lv3.median:.2f}× LayoutLMv3's"
        costs.append(text)
    if costs:
        parts.append(
            "DocFormerv2 against a plain T5 of the same shape is the price of its visual tokens "
            "(the encoder reads them on top of the text) and of the spatial and modality "
            "embeddings; against LayoutLMv3 it is the price of generating the answer instead of "
            "labelling tokens in one pass. " + "; ".join(costs) + "."
        )
    parts.append(
        f"Every generating model decodes {args.new_tokens} tokens per page, the median length "
        "of the true answers (all fields in one sequence): decoding is sequential, so at batch 1 "
        "it is most of the time and larger batches amortise it."
    )
    if "GPU" in result.figures:
        parts.append("No GPU on this machine: the GPU section was skipped.")
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
