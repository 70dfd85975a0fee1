"""DocFormerv2's building blocks: the embeddings of the multimodal encoder and the small heads
that sit on the encoder or the decoder. The model classes that assemble them are in
`modeling_docformerv2.py` (the shared encoder and the encoder-only heads) and
`generation_docformerv2.py` (the decoder).

- `SpatialEmbeddings` - one table each for x0, y0, x1, y1, width and height (0..1000 buckets),
  summed. Text tokens use their word's box; each visual patch uses its own cell of the page,
  so both modalities live in one coordinate system.
- `VisualEmbeddings` - the light visual branch: the page image, resized to a fixed size, is cut
  into patches by one strided convolution (a linear projection of each patch), plus a learned
  position embedding per patch. No CNN/ViT backbone, as in the paper. The number of visual
  tokens is fixed by the config.
- `TokenToLineHead`, `TokenToGridHead` - the two encoder heads of pre-training: token-to-line
  (pair classifier over [h_i, h_j, h_i * h_j]) and token-to-grid (linear to grid_size**2 cells).
- `CopyHead` (our addition, on by default) - mixes copying of the page's OCR tokens into the
  decoder's next-token distribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from docformer.models.docformerv2.configuration_docformerv2 import DocFormerV2Config


class SpatialEmbeddings(nn.Module):
    """Sum of learned embeddings of x0, y0, x1, y1, width and height (integers 0..1000)."""

    def __init__(self, config: DocFormerV2Config):
        super().__init__()
        n, d = config.coordinate_buckets, config.d_model
        self.x0, self.y0, self.x1, self.y1 = (nn.Embedding(n, d) for _ in range(4))
        self.width, self.height = nn.Embedding(n, d), nn.Embedding(n, d)
        self.max_coordinate = n - 1

    def forward(self, bbox: torch.LongTensor) -> torch.Tensor:
        # Clamp here too: the processor already normalises, but a hand-made or corrupt box must
        # never index out of the tables.
        bbox = bbox.long().clamp(0, self.max_coordinate)
        x0, y0, x1, y1 = bbox.unbind(-1)
        width = (x1 - x0).clamp(0, self.max_coordinate)
        height = (y1 - y0).clamp(0, self.max_coordinate)
        return (
            self.x0(x0) + self.y0(y0) + self.x1(x1) + self.y1(y1)
            + self.width(width) + self.height(height)
        )  # fmt: skip


class VisualEmbeddings(nn.Module):
    """Page image -> a fixed number of patch tokens: linear patch projection + learned position."""

    def __init__(self, config: DocFormerV2Config):
        super().__init__()
        p = config.patch_size
        self.patch_projection = nn.Conv2d(
            config.num_channels, config.d_model, kernel_size=p, stride=p
        )
        self.position_embedding = nn.Embedding(config.num_visual_tokens, config.d_model)
        self.visual_grid = config.visual_grid

    def patch_boxes(self, device: torch.device) -> torch.LongTensor:
        """The box of every patch in 0..1000 page coordinates (row-major), so patches get
        spatial embeddings from the same tables as the words lying on them. Computed on the fly
        (it is tiny) rather than kept as a buffer that checkpoint loading would have to rebuild."""
        rows, cols = self.visual_grid
        r = torch.arange(rows, device=device).repeat_interleave(cols)
        c = torch.arange(cols, device=device).repeat(rows)
        return torch.stack(
            [c * 1000 // cols, r * 1000 // rows, (c + 1) * 1000 // cols, (r + 1) * 1000 // rows], -1
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        weight = self.patch_projection.weight
        patches = self.patch_projection(pixel_values.to(weight.dtype))  # (B, d, rows, cols)
        patches = patches.flatten(2).transpose(1, 2)  # (B, rows*cols, d), row-major
        positions = torch.arange(patches.size(1), device=patches.device)
        return patches + self.position_embedding(positions)


class TokenToLineHead(nn.Module):
    """Classifies a pair of encoder text states: same line / adjacent line / further apart."""

    def __init__(self, config: DocFormerV2Config):
        super().__init__()
        d = config.d_model
        self.dense = nn.Linear(3 * d, d)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.out = nn.Linear(d, config.num_line_classes)

    def forward(self, text_states: torch.Tensor, pairs: torch.LongTensor) -> torch.Tensor:
        # pairs: (B, P, 2) positions in the text sequence; gather both members of each pair.
        d = text_states.size(-1)
        first = text_states.gather(1, pairs[..., 0:1].expand(-1, -1, d))
        second = text_states.gather(1, pairs[..., 1:2].expand(-1, -1, d))
        features = torch.cat([first, second, first * second], dim=-1)
        return self.out(self.dropout(F.gelu(self.dense(features))))


class TokenToGridHead(nn.Module):
    """Predicts, for every text token, which of the grid_size**2 page cells holds its box centre."""

    def __init__(self, config: DocFormerV2Config):
        super().__init__()
        self.out = nn.Linear(config.d_model, config.grid_size**2)

    def forward(self, text_states: torch.Tensor) -> torch.Tensor:
        return self.out(text_states)


class CopyHead(nn.Module):
    """Pointer-generator output (See et al., 2017): the next token is drawn either from the
    vocabulary or copied from an OCR token of the page.

    Not in the DocFormerv2 paper, which learns copying through the plain LM head over a large
    pre-training run. Key-value answers are almost all verbatim spans of the page, and a small
    model fine-tuned on a few thousand pages learned to emit the field names and the empty
    answer long before it learned to copy values (greedy decoding then answers "" everywhere).
    An explicit copy distribution makes copying one attention away, so it is learned in a few
    hundred steps. With `copy_mechanism=False` the model is the paper's plain decoder.

    p(w) = g * softmax(lm_logits)(w) + (1 - g) * sum over OCR positions i with token w of a_i,
    where a = softmax(q(decoder state) . k(encoder text state) + b * follows) over the copyable
    positions and the gate g = sigmoid(w . [decoder state ; attended encoder state]).

    `follows` marks the OCR positions right after an occurrence of the token just emitted: a
    learned bonus b for continuing the span being copied. Without it the attention knows what
    it copies but not where it is in the span, and a small model repeats a span's first token
    ("HARD HARD HARD ...") instead of walking along it. A token seen in many places (",", "NO")
    leaves `follows` ambiguous, and the copy jumps to another occurrence ("43000 KAJANG, 43000
    KAJANG, ..."): `follows_pair` marks the positions after an occurrence of the last *two*
    tokens emitted, which is almost always one place, and earns a second bonus b2.

    Both bonuses are shifted by a linear function of the decoder state (`follow_shift`, zero at
    first). A constant bonus is right inside a span and wrong at a value's first token: there
    the token just emitted is the ":" of the field name, so `follows` marks every place after a
    colon of the page ("CASH : 20.00", "Tel:03-...") and pulls the answer there. The decoder
    state knows which of the two it is in.
    """

    def __init__(self, config: DocFormerV2Config):
        super().__init__()
        d = config.d_model
        self.query = nn.Linear(d, d, bias=False)
        self.key = nn.Linear(d, d, bias=False)
        self.gate = nn.Linear(2 * d, 1)
        self.follow_bonus = nn.Parameter(torch.zeros(1))
        self.follow_pair_bonus = nn.Parameter(torch.zeros(1))
        self.follow_shift = nn.Linear(d, 2)

    def forward(
        self,
        decoder_states: torch.Tensor,
        lm_logits: torch.Tensor,
        text_states: torch.Tensor,
        input_ids: torch.LongTensor,
        copyable: torch.Tensor,
        previous_tokens: torch.LongTensor,
    ) -> torch.Tensor:
        """Log-probabilities (B, L, V) of the mixed distribution (they serve as logits).

        previous_tokens (B, L'), L' >= L: the decoder inputs so far; its last L columns are the
        inputs of the L decoder states (the token emitted before each), and the column before
        each of those is the token emitted before that (generation passes its whole history)."""
        length = decoder_states.size(1)
        last = previous_tokens[:, -length:]
        second_last = F.pad(previous_tokens, (1, 0), value=-1)[:, -length - 1 : -1]
        scores = torch.einsum(
            "bld,bsd->bls", self.query(decoder_states), self.key(text_states)
        ).float() * (decoder_states.size(-1) ** -0.5)
        before = F.pad(input_ids[:, :-1], (1, 0), value=-1)  # the token before each position
        two_before = F.pad(input_ids[:, :-2], (2, 0), value=-1)
        follows = before[:, None, :] == last[:, :, None]
        follows_pair = follows & (two_before[:, None, :] == second_last[:, :, None])
        shift = self.follow_shift(decoder_states).float()  # (B, L, 2)
        scores = scores + (self.follow_bonus.float() + shift[..., :1]) * follows
        scores = scores + (self.follow_pair_bonus.float() + shift[..., 1:]) * follows_pair
        scores = scores.masked_fill(~copyable[:, None, :], torch.finfo(scores.dtype).min)
        attention = scores.softmax(-1) * copyable[:, None, :]  # rows without any copyable: 0
        context = torch.einsum("bls,bsd->bld", attention.to(text_states.dtype), text_states)
        gate = torch.sigmoid(self.gate(torch.cat([decoder_states, context], -1)).float())
        has_source = copyable.any(-1)[:, None, None]
        gate = torch.where(has_source, gate, torch.ones_like(gate))
        probs = gate * lm_logits.float().softmax(-1)
        index = input_ids[:, None, :].expand(-1, decoder_states.size(1), -1)
        probs = probs.scatter_add(-1, index, (1 - gate) * attention)
        return probs.clamp_min(1e-12).log()


__all__ = [
    "CopyHead",
    "SpatialEmbeddings",
    "TokenToGridHead",
    "TokenToLineHead",
    "VisualEmbeddings",
]
