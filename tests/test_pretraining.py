"""Pre-training targets on hand-built pages, the collator's alignment with the corrupted encoder
sequence, and a short real pre-training run that must learn all three tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from faker import Faker

from docformer.document import OCRResult, Word
from docformer.models.docformerv2 import (
    DocFormerV2Config,
    DocFormerV2ForPreTraining,
    DocFormerV2Processor,
)
from docformer.pretraining import (
    ADJACENT_LINE,
    FURTHER_LINE,
    IGNORE_INDEX,
    SAME_LINE,
    PretrainingCollator,
    line_class,
    reassemble_spans,
    span_corruption,
    token_to_grid_labels,
    token_to_line_pairs,
)
from docformer.tokenization import sentinel_ids, train_tokenizer

torch.set_num_threads(1)

PAGE_W, PAGE_H = 1000, 1400
SENTINELS = list(range(1000, 1100))


def make_page(rng: np.random.Generator, words: list[str], n_lines: int | None = None) -> OCRResult:
    """Words laid out in lines (one or two columns) with known boxes and reading-order line ids."""
    n_lines = n_lines if n_lines is not None else int(rng.integers(4, 12))
    two_columns = bool(rng.integers(2))
    line_height = int(rng.integers(40, 70))
    top = int(rng.integers(40, 500))
    page_words, line_id = [], 0
    columns = [(40, 480), (520, 960)] if two_columns else [(40, 960)]
    for left, right in columns:
        for k in range(n_lines):
            y0 = top + k * line_height
            if y0 + 30 > PAGE_H:
                break
            x = left + int(rng.integers(0, 60))
            for _ in range(int(rng.integers(1, 5))):
                text = str(rng.choice(words))
                width = 14 * len(text)
                if x + width > right:
                    break
                page_words.append(Word(text, (x, y0, x + width, y0 + 30), 1.0, line_id))
                x += width + int(rng.integers(10, 40))
            line_id += 1
    return OCRResult(PAGE_W, PAGE_H, page_words, engine="test")


@pytest.fixture(scope="module")
def word_list() -> list[str]:
    faker = Faker()
    faker.seed_instance(1)
    return sorted({w.lower() for w in faker.words(300)})[:60]


@pytest.fixture(scope="module")
def tokenizer(word_list):
    faker = Faker()
    faker.seed_instance(2)
    texts = [faker.sentence(12) for _ in range(1500)] + [" ".join(word_list)] * 3
    return train_tokenizer(texts, vocab_size=400)


# --- span corruption ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 20, 100, 511])
def test_span_corruption_reassembles_to_the_original(n):
    for seed in range(20):
        tokens = list(np.random.default_rng(seed + 1000).integers(0, 900, n))
        c = span_corruption(tokens, SENTINELS, noise_density=0.15, mean_span=3.0, rng=seed)
        assert reassemble_spans(c.inputs, c.targets, SENTINELS) == tokens
        # source maps each kept input back to its original token; sentinels are -1
        assert [c.inputs[i] for i, s in enumerate(c.source) if s >= 0] == [
            tokens[s] for s in c.source if s >= 0
        ]
        n_sentinels = sum(t in SENTINELS for t in c.inputs)
        assert n_sentinels == len(c.spans) == sum(t in SENTINELS for t in c.targets)
        if n >= 2:
            noise = sum(end - start for start, end in c.spans)
            assert noise == min(max(round(n * 0.15), 1), n - 1)
            assert c.source[0] == 0, "T5 starts with a kept span"
            assert c.targets[0] == SENTINELS[0]
            assert c.inputs.count(SENTINELS[0]) == 1
        else:
            assert c.inputs == tokens and c.targets == []


def test_span_corruption_is_seeded():
    tokens = list(range(200))
    a = span_corruption(tokens, SENTINELS, rng=5)
    b = span_corruption(tokens, SENTINELS, rng=5)
    c = span_corruption(tokens, SENTINELS, rng=6)
    assert a == b and a != c


# --- token-to-line --------------------------------------------------------------------------


def test_line_classes_for_a_known_layout():
    assert line_class(3, 3) == SAME_LINE
    assert line_class(3, 4) == line_class(4, 3) == ADJACENT_LINE
    assert line_class(0, 2) == line_class(9, 1) == FURTHER_LINE
    # positions: two tokens on line 0, two on line 1, one on line 2, one on line 5, then a
    # sentinel (-1) and padding (-1) that must never be sampled
    line_ids = [0, 0, 1, 1, 2, 5, -1, -1]
    pairs, classes = token_to_line_pairs(line_ids, 300, rng=0)
    assert pairs.shape == (300, 2) and classes.shape == (300,)
    for (i, j), c in zip(pairs.tolist(), classes.tolist(), strict=True):
        assert i != j
        assert line_ids[i] >= 0 and line_ids[j] >= 0
        assert c == line_class(line_ids[i], line_ids[j])
    assert np.bincount(classes, minlength=3).tolist() == [100, 100, 100]  # balanced


def test_line_pairs_use_only_the_classes_a_page_has():
    pairs, classes = token_to_line_pairs([4, 4, 4], 10, rng=0)  # one line only
    assert set(classes.tolist()) == {SAME_LINE} and len(pairs) == 10
    pairs, classes = token_to_line_pairs([0, 1], 9, rng=0)  # one token per line, two lines
    assert set(classes.tolist()) == {ADJACENT_LINE}
    pairs, classes = token_to_line_pairs([0, -1, -1], 9, rng=0)  # a single valid token
    assert pairs.shape == (0, 2) and classes.shape == (0,)


# --- token-to-grid --------------------------------------------------------------------------


def test_grid_cells_for_known_boxes_borders_and_edges():
    boxes = [
        (100, 100, 150, 150),  # centre (125, 125): first cell
        (0, 0, 0, 0),  # page corner
        (200, 0, 300, 0),  # centre x exactly 250: on the border -> the higher column (1)
        (0, 200, 0, 300),  # centre y exactly 250 -> row 1 -> cell 4
        (0, 0, 500, 500),  # centre (250, 250) -> cell 5
        (1000, 1000, 1000, 1000),  # page edge: the last cell, not a fifth column
        (990, 0, 1000, 10),  # right edge, top row -> cell 3
        (740, 740, 759, 759),  # centre 749.5: still cell (2, 2) = 10
        (740, 740, 760, 760),  # centre 750 exactly: border -> (3, 3) = 15
    ]
    assert token_to_grid_labels(boxes, grid=4).tolist() == [0, 0, 1, 4, 5, 15, 3, 10, 15]
    # a 3x3 grid has borders at 333.33 and 666.67: integer arithmetic, no float ties
    assert token_to_grid_labels([(0, 0, 666, 666), (0, 0, 667, 667)], grid=3).tolist() == [0, 4]
    # out-of-range coordinates clamp to the page
    assert token_to_grid_labels(
        [(-50, -50, -10, -10), (2000, 5000, 3000, 9000)], grid=4
    ).tolist() == [0, 15]
    assert token_to_grid_labels(np.zeros((0, 4)), grid=4).shape == (0,)


# --- collator -------------------------------------------------------------------------------


def small_config(tokenizer, **overrides) -> DocFormerV2Config:
    settings = dict(
        vocab_size=len(tokenizer), d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2,
        num_decoder_layers=2, image_size=[64, 64], patch_size=32, max_text_tokens=96,
        dropout_rate=0.0,
    )  # fmt: skip
    return DocFormerV2Config(**{**settings, **overrides})


def test_collator_aligns_targets_with_the_corrupted_sequence(tokenizer, word_list):
    rng = np.random.default_rng(0)
    processor = DocFormerV2Processor(tokenizer, image_size=(64, 64), max_text_tokens=400)
    collator = PretrainingCollator(processor, line_pairs_per_page=24, grid_size=4, seed=0)
    pages = [make_page(rng, word_list, n) for n in (2, 5, 9)]
    batch = collator([(None, p) for p in pages])
    sentinels = set(sentinel_ids(tokenizer))
    B, T = batch["input_ids"].shape
    assert batch["bbox"].shape == (B, T, 4) and batch["grid_labels"].shape == (B, T)
    assert batch["line_pairs"].shape == (B, 24, 2) and batch["line_labels"].shape == (B, 24)
    assert batch["pixel_values"].shape == (B, 3, 64, 64)
    for b, page in enumerate(pages):
        ids = batch["input_ids"][b].tolist()
        n = int(batch["attention_mask"][b].sum())
        assert batch["attention_mask"][b, n:].sum() == 0
        assert ids[n - 1] == tokenizer.eos_token_id
        is_sentinel = [t in sentinels for t in ids[: n - 1]]
        assert any(is_sentinel), "every page long enough gets at least one span"
        grid = batch["grid_labels"][b].tolist()
        for t in range(T):
            if t >= n - 1 or is_sentinel[t]:
                assert grid[t] == IGNORE_INDEX  # sentinels, </s>, padding: no grid target
            else:
                assert grid[t] == token_to_grid_labels([batch["bbox"][b, t].tolist()])[0]
        # every line pair joins two kept OCR tokens and its class follows their OCR lines
        words = batch["word_ids"][b].tolist()
        for (i, j), c in zip(
            batch["line_pairs"][b].tolist(), batch["line_labels"][b].tolist(), strict=True
        ):
            assert not is_sentinel[i] and not is_sentinel[j] and i < n - 1 and j < n - 1
            assert c == line_class(page.words[words[i]].line_id, page.words[words[j]].line_id)
        # the decoder targets put the page back together
        labels = [t for t in batch["labels"][b].tolist() if t != IGNORE_INDEX]
        assert labels[-1] == tokenizer.eos_token_id
        original = processor.tokenize_page(page).input_ids
        assert reassemble_spans(ids[: n - 1], labels[:-1], sentinel_ids(tokenizer)) == original
        # a sentinel's box covers the tokens it hides
        for t in np.flatnonzero(is_sentinel):
            x0, y0, x1, y1 = batch["bbox"][b, t].tolist()
            assert x0 <= x1 and y0 <= y1 and (x1 - x0) + (y1 - y0) > 0


def test_collator_windows_long_pages_and_is_seeded(tokenizer, word_list):
    rng = np.random.default_rng(1)
    page = make_page(rng, word_list, 30)
    processor = DocFormerV2Processor(
        tokenizer, image_size=(64, 64), max_text_tokens=64, window_overlap=8
    )
    assert len(processor.tokenize_page(page)) > 64
    a = PretrainingCollator(processor, seed=3)([(None, page)] * 2)
    b = PretrainingCollator(processor, seed=3)([(None, page)] * 2)
    assert a["input_ids"].shape[1] <= 64
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- learning is real -----------------------------------------------------------------------


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(accuracy, majority-class accuracy) over positions whose target is not -100."""
    keep = targets != IGNORE_INDEX
    predicted, truth = logits.argmax(-1)[keep], targets[keep]
    majority = torch.bincount(truth).max().item() / truth.numel()
    return (predicted == truth).float().mean().item(), majority


@pytest.mark.slow
def test_short_pretraining_learns_all_three_tasks(tokenizer, word_list):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    held_out = [make_page(np.random.default_rng(10_000 + i), word_list) for i in range(24)]
    config = small_config(tokenizer)
    model = DocFormerV2ForPreTraining(config)
    processor = DocFormerV2Processor.from_config(config, tokenizer)
    collator = PretrainingCollator(
        processor, line_pairs_per_page=32, grid_size=config.grid_size, seed=0
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)

    history = {"mlm": [], "line": [], "grid": []}
    model.train()
    for _ in range(300):
        # fresh pages every step: each of the 1001 coordinate buckets is its own embedding, so
        # the model must see the page positions it is later tested on (as real pre-training does)
        pages = [make_page(rng, word_list) for _ in range(8)]
        out = model(**collator([(None, p) for p in pages]))
        optimizer.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        for name, value in (
            ("mlm", out.mlm_loss),
            ("line", out.line_loss),
            ("grid", out.grid_loss),
        ):
            history[name].append(value.item())

    for name, values in history.items():
        first, last = np.mean(values[:20]), np.mean(values[-20:])
        print(f"{name} loss {first:.3f} -> {last:.3f}")
        assert last < 0.7 * first, name

    model.eval()
    eval_collator = PretrainingCollator(
        processor, line_pairs_per_page=32, grid_size=config.grid_size, seed=99
    )
    with torch.no_grad():
        out = model(**(batch := eval_collator([(None, p) for p in held_out])))
    line_acc, line_majority = accuracy(out.line_logits, batch["line_labels"])
    grid_acc, grid_majority = accuracy(out.grid_logits, batch["grid_labels"])
    print(f"held-out token-to-line {line_acc:.3f} (majority {line_majority:.3f})")
    print(f"held-out token-to-grid {grid_acc:.3f} (majority {grid_majority:.3f})")
    assert line_acc > line_majority + 0.2
    assert grid_acc > grid_majority + 0.3
