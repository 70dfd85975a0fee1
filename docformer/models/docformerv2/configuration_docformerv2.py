"""DocFormerv2 configuration: everything that decides the shape of the network.

DocFormerv2 (Appalaraju et al., AAAI 2024) is a T5 encoder-decoder whose encoder reads visual
tokens, then OCR text tokens, then the prompt, each with spatial (box) and modality embeddings.
`DocFormerV2Config` therefore *is* a `T5Config` (every T5 field keeps its meaning: d_model, d_kv,
d_ff, num_layers, num_decoder_layers, num_heads, relative attention buckets, dropout_rate...)
plus the fields of the visual branch, the spatial embeddings and the two encoder pre-training
heads. Subclassing rather than nesting a T5 sub-config lets the encoder and decoder be built
from the config exactly as `T5ForConditionalGeneration` builds them.

Choices where the paper is silent (reasons inline):

- `image_size` is (height, width) = (512, 384) for `small`/`base`: a page-like 4:3 portrait
  shape, so text lines are not squashed the way a square 224x224 resize squashes them. With
  32-pixel patches that is 16x12 = 192 visual tokens.
- The coordinate vocabulary is 1001 buckets (integer 0..1000, both ends included), one learned
  table for each of x0, y0, x1, y1, width and height, shared by text tokens and visual patches.
- Loss weights of the three pre-training tasks default to 1.0 each (the paper trains them
  jointly and gives no weights).
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import T5Config

# Presets. `vocab_size` is a placeholder: pass the trained tokenizer's `len(tokenizer)`.
#
# tiny: d_model 256, 4+4 layers, 4 heads of 64, d_ff 1024, 256x192 page image (48 visual
#   tokens), 512 text tokens: 11.9M parameters with an 8k vocabulary. Measured on the 2-core
#   machine while it was busy with other work: one AdamW step on 8 full pages (450 text tokens
#   each, all three tasks) takes about 3 s with 2 threads, so an hour is ~1000 such steps (more
#   with shorter pages); the much smaller test config learns all three tasks in 300 steps. Four
#   layers rather than two because token-to-line needs tokens to compare positions through attention.
# small: T5-small's shape (d_model 512, 6+6 layers, 8 heads, d_ff 2048): 66.1M parameters.
# base: the paper's base (T5-base shape, 12+12 layers, d_model 768): 231.8M parameters with a
#   32k vocabulary, the ~232M the paper reports.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        vocab_size=8000,
        d_model=256,
        d_kv=64,
        d_ff=1024,
        num_layers=4,
        num_decoder_layers=4,
        num_heads=4,
        image_size=[256, 192],
        patch_size=32,
        max_text_tokens=512,
    ),
    "small": dict(
        vocab_size=32128,
        d_model=512,
        d_kv=64,
        d_ff=2048,
        num_layers=6,
        num_decoder_layers=6,
        num_heads=8,
        image_size=[512, 384],
        patch_size=32,
        max_text_tokens=512,
    ),
    "base": dict(
        vocab_size=32128,
        d_model=768,
        d_kv=64,
        d_ff=3072,
        num_layers=12,
        num_decoder_layers=12,
        num_heads=12,
        image_size=[512, 384],
        patch_size=32,
        max_text_tokens=512,
    ),
}


@strict
class DocFormerV2Config(T5Config):
    r"""
    image_size (`list[int]`, defaults to `[512, 384]`):
        (height, width) the page image is resized to before it is cut into patches.
    patch_size (`int`, defaults to 32):
        Side of the square patches; `image_size` must be a multiple of it. The number of visual
        tokens is fixed: (height // patch_size) * (width // patch_size).
    num_channels (`int`, defaults to 3):
        RGB.
    max_text_tokens (`int`, defaults to 512):
        Encoder text positions (OCR tokens + prompt + end-of-sequence) a window may hold.
    coordinate_buckets (`int`, defaults to 1001):
        Size of each spatial embedding table: boxes are integers 0..1000.
    grid_size (`int`, defaults to 4):
        Token-to-grid lays a grid_size x grid_size grid on the page.
    num_line_classes (`int`, defaults to 3):
        Token-to-line classes: same line, adjacent line, further apart.
    mlm_loss_weight, line_loss_weight, grid_loss_weight (`float`, default 1.0):
        Weights of the three pre-training losses in the total loss.
    autocast_bf16 (`bool`, defaults to True):
        Run forward/generation under bfloat16 autocast when the weights are on a CUDA device.
    copy_mechanism (`bool`, defaults to True):
        Mix a copy distribution over the page's OCR tokens into the decoder's output (see
        `CopyHead`); False gives the paper's plain LM head.
    no_repeat_ngram_size (`int`, defaults to 4):
        Greedy generation never writes the same n tokens twice (0 turns the rule off). A copy
        head that follows a span by token identity can loop on a span holding a token twice
        ("43000 KAJANG, 43000 KAJANG, ..."), and a loop spends the token budget of every
        field after it. Field names differ, so the answer's own structure never repeats 4 tokens.
    decoder_start_token_id (`int`, defaults to 0):
        First decoder input (the pad token, as in T5).
    tagging_fields (`list[str]`, defaults to None):
        The field schema of `DocFormerV2ForTokenClassification`: each OCR word is tagged "O",
        "B-<field>" or "I-<field>" (`tag_names`). None for the other heads.
    value_styles (`dict`, defaults to None):
        Per field, the style the labels were written in (`docformer.value_style.ValueStyle`
        as a dict), learned by fine-tuning; extraction writes values in it.
    """

    model_type = "docformerv2"

    image_size: list[int] | tuple[int, int] = (512, 384)
    patch_size: int = 32
    num_channels: int = 3
    max_text_tokens: int = 512
    coordinate_buckets: int = 1001
    grid_size: int = 4
    num_line_classes: int = 3
    mlm_loss_weight: float | int = 1.0
    line_loss_weight: float | int = 1.0
    grid_loss_weight: float | int = 1.0
    autocast_bf16: bool = True
    copy_mechanism: bool = True
    no_repeat_ngram_size: int = 4
    # T5 starts decoding from the pad token; transformers 5 keeps this out of T5Config.
    decoder_start_token_id: int | None = 0
    tagging_fields: list[str] | None = None
    value_styles: dict | None = None
    answer_thresholds: dict | None = None

    def __post_init__(self, **kwargs):
        self.image_size = [int(v) for v in self.image_size]
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        super().validate_architecture()
        height, width = self.image_size
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.grid_size < 1:
            raise ValueError("grid_size must be at least 1")

    @property
    def tag_names(self) -> list[str]:
        """BIO tags of the tagging head: "O", then "B-f", "I-f" for each field f in order."""
        tags = ["O"]
        for name in self.tagging_fields or []:
            tags += [f"B-{name}", f"I-{name}"]
        return tags

    @property
    def visual_grid(self) -> tuple[int, int]:
        """(rows, cols) of visual patches."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_visual_tokens(self) -> int:
        rows, cols = self.visual_grid
        return rows * cols

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> DocFormerV2Config:
        """`DocFormerV2Config.from_preset("tiny", vocab_size=len(tokenizer))`."""
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


__all__ = ["PRESETS", "DocFormerV2Config"]
