"""DocFormerv2 model and processor: presets, shapes and masks, box repair, windows, save/load,
attention backends and greedy generation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from faker import Faker
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

from docformer.document import OCRResult, Word
from docformer.models.docformerv2 import (
    Answer,
    DocFormerV2Config,
    DocFormerV2ForPreTraining,
    DocFormerV2Processor,
    merge_window_answers,
    normalize_boxes,
)
from docformer.models.docformerv2.generation_docformerv2 import NoRepeatNGram
from docformer.pretraining import PretrainingCollator
from docformer.tokenization import train_tokenizer

torch.set_num_threads(1)


def make_page(
    seed: int, n_words: int, width: int = 800, height: int = 1100
) -> tuple[Image.Image, OCRResult]:
    """A drawn page of random words in lines, with the OCR result that describes it."""
    rng = np.random.default_rng(seed)
    faker = Faker()
    faker.seed_instance(seed)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    words, x, y, line = [], 30, 30, 0
    for text in faker.words(n_words):
        w = 9 * len(text)
        if x + w > width - 30:
            x, y, line = 30, y + 28, line + 1
        words.append(Word(text, (x, y, x + w, y + 18), float(rng.uniform(0.8, 1)), line))
        draw.text((x, y), text, fill="black")
        x += w + 12
    return image, OCRResult(width, height, words, engine="test")


@pytest.fixture(scope="module")
def tokenizer():
    faker = Faker()
    faker.seed_instance(0)
    return train_tokenizer([faker.sentence(10) for _ in range(800)], vocab_size=300)


@pytest.fixture(scope="module")
def config(tokenizer) -> DocFormerV2Config:
    return DocFormerV2Config(
        vocab_size=len(tokenizer), d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2,
        num_decoder_layers=2, image_size=[96, 64], patch_size=32, max_text_tokens=64,
        dropout_rate=0.0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def model(config) -> DocFormerV2ForPreTraining:
    torch.manual_seed(0)
    return DocFormerV2ForPreTraining(config).eval()


@pytest.fixture(scope="module")
def processor(config, tokenizer) -> DocFormerV2Processor:
    return DocFormerV2Processor.from_config(config, tokenizer, window_overlap=8)


# --- presets --------------------------------------------------------------------------------


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights counted once


def test_preset_parameter_counts():
    counts = {}
    for name in ("tiny", "small"):
        model = DocFormerV2ForPreTraining(DocFormerV2Config.from_preset(name))
        counts[name] = count(model)
        assert model.lm_head.weight is model.shared.weight
    with torch.device("meta"):  # 232M parameters: count them without allocating them
        counts["base"] = count(DocFormerV2ForPreTraining(DocFormerV2Config.from_preset("base")))
    for name, n in counts.items():
        print(f"{name}: {n / 1e6:.1f}M parameters")
    assert 5e6 < counts["tiny"] < 20e6
    assert 55e6 < counts["small"] < 75e6  # T5-small (60.5M) plus the layout parts and heads
    assert abs(counts["base"] - 232e6) / 232e6 < 0.03  # the paper's base
    config = DocFormerV2Config.from_preset("tiny", vocab_size=1234, grid_size=3)
    assert config.vocab_size == 1234 and config.grid_size == 3 and config.num_visual_tokens == 48
    with pytest.raises(KeyError):
        DocFormerV2Config.from_preset("huge")


# --- processor ------------------------------------------------------------------------------


def test_batches_of_pages_with_different_word_counts(model, processor, config):
    pages = [make_page(1, 3), make_page(2, 12), make_page(3, 0)]
    batch = processor([p[0] for p in pages], [p[1] for p in pages], prompts=["total", "date", None])
    B, T = batch["input_ids"].shape
    assert B == 3
    assert batch["input_ids"].shape[1] <= config.max_text_tokens
    assert batch["bbox"].shape == (B, T, 4)
    assert batch["pixel_values"].shape == (B, 3, 96, 64)
    lengths = batch["attention_mask"].sum(1).tolist()
    assert lengths[2] == 1  # an empty page still has its </s>
    for b, n in enumerate(lengths):
        assert batch["attention_mask"][b, :n].all() and not batch["attention_mask"][b, n:].any()
        assert batch["input_ids"][b, n - 1] == processor.tokenizer.eos_token_id
        assert (batch["input_ids"][b, n:] == processor.tokenizer.pad_token_id).all()
        ocr = pages[b][1]
        words = batch["word_ids"][b, :n].tolist()
        # OCR tokens first (type 0) in word order covering every word, then prompt and </s>
        ocr_part = [w for w in words if w >= 0]
        assert ocr_part == sorted(ocr_part) and set(ocr_part) == set(range(len(ocr.words)))
        types = batch["token_type_ids"][b, :n].tolist()
        assert types == [0] * len(ocr_part) + [1] * (n - len(ocr_part))
        for t, w in enumerate(words):
            if w >= 0:  # each token inherits its word's box, normalised once
                expected = normalize_boxes([ocr.words[w].box], ocr.width, ocr.height)[0]
                assert batch["bbox"][b, t].tolist() == expected.tolist()
            else:
                assert batch["bbox"][b, t].tolist() == [0, 0, 1000, 1000]

    with torch.no_grad():
        out = model(**batch, labels=torch.tensor([[5, 6, 1], [7, 1, -100], [1, -100, -100]]))
    assert out.logits.shape == (3, 3, config.vocab_size)
    assert out.encoder_last_hidden_state.shape == (3, config.num_visual_tokens + T, config.d_model)
    assert out.encoder_attention_mask[:, : config.num_visual_tokens].all()
    assert torch.isfinite(out.loss) and out.line_loss is None and out.grid_loss is None


def test_padding_does_not_change_a_page_result(model, processor):
    pages = [make_page(4, 5), make_page(5, 20)]
    together = processor([p[0] for p in pages], [p[1] for p in pages], prompts="total")
    alone = processor([pages[0][0]], [pages[0][1]], prompts="total")
    n = int(alone["attention_mask"].sum())
    labels = torch.tensor([[8, 9, 1]])
    with torch.no_grad():
        a = model(**alone, labels=labels).logits
        b = model(**together, labels=labels.repeat(2, 1)).logits[:1]
    assert torch.allclose(a, b, atol=1e-5)
    assert n < together["input_ids"].shape[1]


def test_out_of_range_and_broken_boxes_are_clamped_not_raised(model, processor):
    boxes = [
        (-50, -10, 100, 100),  # negative
        (700, 900, 5000, 9000),  # past the page
        (300, 300, 100, 100),  # reversed corners
        (float("nan"), 10, float("inf"), 20),  # not numbers
        (10, 10, 10, 10),  # degenerate
    ]
    normalised = normalize_boxes(boxes, 800, 1000)
    assert normalised.dtype == np.int64
    assert ((normalised >= 0) & (normalised <= 1000)).all()
    assert (normalised[:, 0] <= normalised[:, 2]).all() and (
        normalised[:, 1] <= normalised[:, 3]
    ).all()
    assert normalised.tolist()[:3] == [
        [0, 0, 125, 100],
        [875, 900, 1000, 1000],
        [125, 100, 375, 300],
    ]
    assert normalize_boxes(boxes, 0, -5).shape == (5, 4)  # a page without a size does not crash

    ocr = OCRResult(0, 0, [Word(f"w{i}", box, 1.0, i) for i, box in enumerate(boxes)])
    batch = processor([None], [ocr])
    batch["bbox"][0, 0] = torch.tensor([-7, 3000, 99999, -1])  # hand-made garbage reaches the model
    with torch.no_grad():
        out = model(**batch, labels=torch.tensor([[5, 1]]))
    assert torch.isfinite(out.logits).all()


def test_processor_is_deterministic_and_round_trips(processor, tmp_path):
    image, ocr = make_page(6, 30)
    first = processor([image], [ocr], prompts="extract: total")
    second = processor([image], [ocr], prompts="extract: total")
    processor.save_pretrained(tmp_path)
    reloaded = DocFormerV2Processor.from_pretrained(tmp_path)
    third = reloaded([image], [ocr], prompts="extract: total")
    assert reloaded.to_dict() == processor.to_dict()
    for key in first:
        assert torch.equal(first[key], second[key]), key
        assert torch.equal(first[key], third[key]), key


def test_long_pages_are_windowed_with_overlap_and_nothing_dropped(processor, config):
    image, ocr = make_page(7, 150)
    tokens = processor.tokenize_page(ocr)
    assert len(tokens) > 3 * config.max_text_tokens
    batch, source_index = processor.windows(
        [image, None], [ocr, make_page(8, 4)[1]], prompts="total"
    )
    assert batch["input_ids"].shape[1] <= config.max_text_tokens
    windows_of_page = [r for r, s in enumerate(source_index) if s == 0]
    assert len(windows_of_page) >= 4 and source_index[-1] == 1
    seen, previous = set(), None
    for r in windows_of_page:
        words = {w for w in batch["word_ids"][r].tolist() if w >= 0}
        if previous is not None:
            assert words & previous, "consecutive windows overlap"
        seen |= words
        previous = words
    assert seen == set(range(len(ocr.words)))  # every word is seen by some window
    # windows are cut between words: every word's tokens sit whole in at least one window
    counts = np.bincount(tokens.word_ids)
    for w in range(len(ocr.words)):
        assert any((batch["word_ids"][r] == w).sum().item() == counts[w] for r in windows_of_page)


def test_merge_window_answers_keeps_the_most_confident_non_empty_answer():
    answers = [
        Answer("", 0.99),
        Answer("12.50", 0.6),
        Answer("12.80", 0.4),
        Answer("", 0.7),
        Answer("", 0.9),
        Answer("x", 0.1),
    ]
    merged = merge_window_answers(answers, [0, 0, 0, 1, 1, 2])
    assert [(a.text, a.confidence) for a in merged] == [("12.50", 0.6), ("", 0.9), ("x", 0.1)]


# --- persistence, attention backends, generation --------------------------------------------


def test_save_and_load_give_identical_logits(model, processor, tmp_path):
    collator = PretrainingCollator(processor, seed=0)
    batch = collator([make_page(9, 20), make_page(10, 7)])
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    reloaded, info = DocFormerV2ForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert reloaded.lm_head.weight is reloaded.shared.weight
    assert reloaded.encoder.embed_tokens.weight is reloaded.shared.weight
    reloaded.eval()
    with torch.no_grad():
        a, b = model(**batch), reloaded(**batch)
    for key in ("logits", "line_logits", "grid_logits", "loss"):
        assert torch.equal(a[key], b[key]), key
    assert DocFormerV2Processor.from_pretrained(tmp_path).to_dict() == processor.to_dict()


def test_follow_shift_loads_as_zero_into_older_weights_and_can_cancel_the_bonus(
    model, processor, tmp_path
):
    batch = PretrainingCollator(processor, seed=0)([make_page(9, 20), make_page(10, 7)])
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    older = {k: v for k, v in weights.items() if "follow_shift" not in k}  # saved before it
    save_file(older, tmp_path / "model.safetensors", metadata={"format": "pt"})
    reloaded, info = DocFormerV2ForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    shift = reloaded.copy_head.follow_shift
    assert set(info["missing_keys"]) == {
        "copy_head.follow_shift.weight",
        "copy_head.follow_shift.bias",
    }
    assert not shift.weight.any() and not shift.bias.any()
    reloaded.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reloaded(**batch).logits)  # as it was trained
        # a shift of minus the bonuses is a copy head without them
        shift.bias.copy_(
            -torch.cat([reloaded.copy_head.follow_bonus, reloaded.copy_head.follow_pair_bonus])
        )
        shifted = reloaded(**batch).logits
        shift.bias.zero_()
        reloaded.copy_head.follow_bonus.zero_()
        reloaded.copy_head.follow_pair_bonus.zero_()
        torch.testing.assert_close(shifted, reloaded(**batch).logits)
        assert not torch.equal(shifted, model(**batch).logits)


def test_sdpa_and_eager_attention_agree(config, processor):
    torch.manual_seed(1)
    sdpa = DocFormerV2ForPreTraining(config).eval()
    assert sdpa.config._attn_implementation == "sdpa"
    eager = DocFormerV2ForPreTraining(config).eval()
    eager.load_state_dict(sdpa.state_dict())
    eager.set_attn_implementation("eager")
    assert eager.encoder.config._attn_implementation == "eager"
    batch = PretrainingCollator(processor, seed=0)([make_page(11, 9), make_page(12, 25)])
    with torch.no_grad():
        a, b = sdpa(**batch), eager(**batch)
    for key in ("logits", "line_logits", "grid_logits"):
        assert torch.allclose(a[key], b[key], atol=1e-4), key


def test_greedy_generation_matches_teacher_forcing_and_batching(
    model, processor, config, monkeypatch
):
    # Plain argmax decoding: the n-gram rule (tested below) departs from it by design.
    monkeypatch.setattr(model.config, "no_repeat_ngram_size", 0)
    pages = [make_page(13, 6), make_page(14, 30)]
    batch = processor([p[0] for p in pages], [p[1] for p in pages], prompts=["total", "date"])
    generation = model.generate_answers(**batch, max_new_tokens=6)
    B, L = generation.sequences.shape
    assert B == 2 and L <= 6
    probs = generation.token_probs
    assert ((probs > 0) & (probs <= 1)).sum(1).tolist() == generation.lengths.tolist()
    # the cached greedy loop picks exactly the argmax a full teacher-forced pass gives
    start = torch.zeros((B, 1), dtype=torch.long)
    with torch.no_grad():
        logits = model(
            **batch, decoder_input_ids=torch.cat([start, generation.sequences[:, :-1]], 1)
        ).logits
    for b in range(B):
        n = generation.lengths[b]
        assert torch.equal(logits[b, :n].argmax(-1), generation.sequences[b, :n])
        expected = logits[b, :n].softmax(-1).max(-1).values
        assert torch.allclose(probs[b, :n], expected, atol=1e-5)
    # a page's answer does not depend on the other pages of its batch
    alone = processor([pages[0][0]], [pages[0][1]], prompts=["total"])
    single = model.generate_answers(**alone, max_new_tokens=6)
    n = single.lengths[0]
    assert torch.equal(single.sequences[0, :n], generation.sequences[0, :n])
    answers = processor.decode_answers(generation)
    assert len(answers) == 2
    for b, answer in enumerate(answers):
        n = generation.lengths[b]
        assert math.isclose(answer.confidence, math.prod(probs[b, :n].tolist()), rel_tol=1e-6)
        assert len(answer.token_probs) == n


def test_generation_never_repeats_an_ngram(model, processor):
    block = NoRepeatNGram(batch=2, size=3)
    for step in ([5, 1], [6, 1], [5, 1], [6, 2]):
        block.add(torch.tensor(step))
    # row 0 wrote 5 6 5 6: after "5 6" came 5, so 5 is banned now; row 1 wrote 1 1 1 2.
    probs = block.mask(torch.full((2, 8), 0.1))
    assert probs[0, 5] < 0 and (probs[0, :5] > 0).all() and (probs[1] > 0).all()

    # An untrained model left to itself loops; with the rule no 4 tokens come twice.
    pages = [make_page(13, 6), make_page(14, 30)]
    batch = processor([p[0] for p in pages], [p[1] for p in pages], prompts=["total", "date"])
    generation = model.generate_answers(**batch, max_new_tokens=24)
    size = model.config.no_repeat_ngram_size
    assert size == 4
    for b, n in enumerate(generation.lengths.tolist()):
        ids = generation.sequences[b, :n].tolist()
        grams = [tuple(ids[i : i + size]) for i in range(len(ids) - size + 1)]
        assert len(grams) == len(set(grams))
