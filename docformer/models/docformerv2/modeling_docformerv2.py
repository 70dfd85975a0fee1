"""DocFormerv2: a T5 encoder-decoder that reads a page (patches + OCR tokens with boxes).

Read top to bottom:

1. `VisualEmbeddings`  - the light visual branch: the page image, resized to a fixed size, is cut
   into patches by one strided convolution (a linear projection of each patch), plus a learned
   position embedding per patch. No CNN/ViT backbone, as in the paper. The number of visual
   tokens is fixed by the config.
2. `SpatialEmbeddings` - one table each for x0, y0, x1, y1, width and height (0..1000 buckets),
   summed. Text tokens use their word's box; each visual patch uses its own cell of the page,
   so both modalities live in one coordinate system.
3. The encoder input is [visual tokens ; text tokens] fed to a T5 encoder as `inputs_embeds`,
   each position carrying a modality embedding: 0 = visual patch, 1 = OCR text, 2 = prompt or
   special token. Three modalities rather than two because a prompt token has no place on the
   page (it gets the full-page box) and would otherwise look like an OCR word spanning the page.
4. The decoder is the plain T5 text decoder with the LM head tied to the shared embeddings;
   `CopyHead` (our addition, on by default) mixes in copying of the page's OCR tokens.
5. Two encoder heads for pre-training, in `DocFormerV2ForPreTraining` only: token-to-line
   (pair classifier over [h_i, h_j, h_i * h_j]) and token-to-grid (linear to grid_size**2 cells). Positions given to
   them (`line_pairs`, `grid_labels`) index the TEXT part of the encoder sequence, i.e. the
   processor's `input_ids` positions; the model adds the visual offset itself.

Attention: transformers 5's T5 supports `attn_implementation="sdpa"` (the default picked here
when available). T5's relative position bias cannot be expressed as a causal flag, so SDPA is
given the bias (plus the padding mask) as an additive float mask: this rules out the flash
kernel but keeps the fused memory-efficient/math kernels; "eager" gives the same numbers.

The classes, as transformers splits a family: `DocFormerV2Model` (the encoder alone),
`DocFormerV2ForPreTraining` (decoder + line/grid heads, for `docformer pretrain`),
`DocFormerV2ForConditionalGeneration` (decoder, for free-form prompts and the generator),
`DocFormerV2ForTokenClassification` (a BIO tagging head over OCR words, for fixed-schema fields).
All share `DocFormerV2PreTrainedModel`'s encoder and weight names, so each loads the encoder of
any other's checkpoint.

`generate_answers` is a batched greedy decoder over cached encoder outputs that returns the token
ids together with the probability of each chosen token (the extraction confidence).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, TokenClassifierOutput
from transformers.models.t5.modeling_t5 import T5PreTrainedModel, T5Stack
from transformers.utils import ModelOutput

from docformer.models.docformerv2.configuration_docformerv2 import DocFormerV2Config

MODALITY_VISUAL, MODALITY_TEXT, MODALITY_PROMPT = 0, 1, 2
IGNORE_INDEX = -100


@dataclass
class DocFormerV2Output(ModelOutput):
    """Total loss and each pre-training loss separately (None where the task had no targets)."""

    loss: torch.FloatTensor | None = None
    mlm_loss: torch.FloatTensor | None = None
    line_loss: torch.FloatTensor | None = None
    grid_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None  # (batch, target_len, vocab)
    line_logits: torch.FloatTensor | None = None  # (batch, n_pairs, num_line_classes)
    grid_logits: torch.FloatTensor | None = None  # (batch, text_len, grid_size**2)
    encoder_last_hidden_state: torch.FloatTensor | None = None  # visual + text positions
    encoder_attention_mask: torch.Tensor | None = None  # visual + text positions


@dataclass
class GreedyGeneration(ModelOutput):
    """`sequences[b, t]`: generated ids (pad after end-of-sequence, no start token);
    `token_probs[b, t]`: probability of each chosen token (0 on padding);
    `lengths[b]`: generated tokens including the end-of-sequence token when one was produced."""

    sequences: torch.LongTensor | None = None
    token_probs: torch.FloatTensor | None = None
    lengths: torch.LongTensor | None = None


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


class DocFormerV2PreTrainedModel(T5PreTrainedModel):
    """What every DocFormerv2 head shares: the config class, weight initialisation, and the
    multimodal encoder (token, spatial, visual and modality embeddings, then a T5 encoder).

    The heads inherit the encoder's modules as attributes of their own (`shared`, `spatial`,
    `visual`, `modality`, `encoder`) instead of holding a base model under a prefix, so every
    class reads the same weight names: a tagging model loads the encoder of a pre-trained or
    generation checkpoint as it is, and checkpoints saved before the split still load.
    """

    config_class = DocFormerV2Config
    config: DocFormerV2Config
    base_model_prefix = "docformerv2"
    main_input_name = "input_ids"

    def _build_encoder(self, config: DocFormerV2Config) -> None:
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.spatial = SpatialEmbeddings(config)
        self.visual = VisualEmbeddings(config)
        self.modality = nn.Embedding(3, config.d_model)
        encoder_config = copy.deepcopy(config)
        encoder_config.is_decoder = False
        encoder_config.use_cache = False
        self.encoder = T5Stack(encoder_config)

    # --- weights -------------------------------------------------------------------------
    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Dispatch on leaf modules: transformers skips container modules that own no parameter
        # of their own, and its generic init (std = initializer_factor = 1.0) is far too large for
        # plain Linear layers. The T5 encoder/decoder are sub-models and keep T5's own init.
        factor = self.config.initializer_factor
        copy_head = getattr(self, "copy_head", None)
        if module is getattr(self, "lm_head", None):
            return  # tied to `shared`
        if isinstance(module, CopyHead):
            # Starts as a clear preference for continuing a span; learned from there. The
            # Linear layers inside are initialised on their own visit.
            init.constant_(module.follow_bonus, 2.0)
            init.constant_(module.follow_pair_bonus, 2.0)
        elif copy_head is not None and module is copy_head.follow_shift:
            # Zero: the constant bonuses alone at first, and a model saved before this layer
            # existed loads with the behaviour it was trained with.
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif any(module is table for table in self.spatial.children()):
            # Six tables are summed: std 1/sqrt(6) each keeps the layout signal at the scale of
            # one token embedding instead of drowning it.
            init.normal_(module.weight, mean=0.0, std=factor * 6**-0.5)
        elif isinstance(module, nn.Embedding):
            # shared tokens (T5's own choice), modality, visual positions: unit scale.
            init.normal_(module.weight, mean=0.0, std=factor * 1.0)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in = module.weight[0].numel()
            init.normal_(module.weight, mean=0.0, std=factor * fan_in**-0.5)
            if module.bias is not None:
                init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.shared = new_embeddings
        self.encoder.set_input_embeddings(new_embeddings)
        if getattr(self, "decoder", None) is not None:
            self.decoder.set_input_embeddings(new_embeddings)

    # --- encoder ------------------------------------------------------------------------
    def embed(
        self,
        input_ids: torch.LongTensor,
        bbox: torch.LongTensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        token_type_ids: torch.LongTensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder `inputs_embeds` and attention mask for [visual tokens ; text tokens].

        token_type_ids: 0 for OCR tokens (and sentinels standing in for them), 1 for prompt and
        special tokens; None means all OCR.
        """
        batch = input_ids.size(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        text = (
            self.shared(input_ids)
            + self.spatial(bbox)
            + self.modality(token_type_ids + MODALITY_TEXT)
        )
        visual = (
            self.visual(pixel_values)
            + self.spatial(self.visual.patch_boxes(input_ids.device))
            + self.modality.weight[MODALITY_VISUAL]
        )
        embeds = torch.cat([visual.to(text.dtype), text], dim=1)
        visual_mask = attention_mask.new_ones(batch, self.config.num_visual_tokens)
        return embeds, torch.cat([visual_mask, attention_mask], dim=1)

    def encode(
        self,
        input_ids: torch.LongTensor,
        bbox: torch.LongTensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        token_type_ids: torch.LongTensor | None = None,
    ) -> tuple[BaseModelOutput, torch.Tensor]:
        """Runs the encoder; returns its output and the full (visual + text) attention mask."""
        embeds, full_mask = self.embed(
            input_ids, bbox, attention_mask, pixel_values, token_type_ids
        )
        return self.encoder(inputs_embeds=embeds, attention_mask=full_mask), full_mask

    def _autocast(self):
        if self.config.autocast_bf16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


class DocFormerV2Model(DocFormerV2PreTrainedModel):
    """The bare multimodal encoder: its output is one state per position, visual tokens first,
    with no head on top (for features, or a head of one's own)."""

    _tied_weights_keys = {"encoder.embed_tokens.weight": "shared.weight"}

    def __init__(self, config: DocFormerV2Config):
        super().__init__(config)
        self._build_encoder(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor,
        bbox: torch.LongTensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        token_type_ids: torch.LongTensor | None = None,
        **unused: torch.Tensor,
    ) -> BaseModelOutput:
        with self._autocast():
            outputs, _ = self.encode(input_ids, bbox, attention_mask, pixel_values, token_type_ids)
        return outputs


class DocFormerV2ForTokenClassification(DocFormerV2PreTrainedModel):
    """The encoder with a tagging head: every OCR word is labelled over the field schema in BIO
    tags (`config.tag_names`), all fields of a window in one forward pass.

    A word is decided on its first sub-token (the others get -100 in `labels`), as BERT-style
    taggers do: in an encoder that attends across the whole row the first piece already sees the
    rest of its word, and one decision per word keeps long words from weighing more in the loss
    than short ones. Fixed-schema extraction uses this head rather than the decoder because a
    small model learns "which printed words are the total" far faster than "write the total".
    """

    _tied_weights_keys = {"encoder.embed_tokens.weight": "shared.weight"}
    # Loaded from a pre-training or generation checkpoint, these are the parts it leaves behind.
    _keys_to_ignore_on_load_unexpected = [
        r"^decoder\.",
        r"^lm_head\.",
        r"^line_head\.",
        r"^grid_head\.",
        r"^copy_head\.",
    ]

    def __init__(self, config: DocFormerV2Config):
        super().__init__(config)
        if not config.tagging_fields:
            raise ValueError("DocFormerV2ForTokenClassification needs config.tagging_fields")
        self.num_labels = len(config.tag_names)
        self._build_encoder(config)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.classifier = nn.Linear(config.d_model, self.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor,
        bbox: torch.LongTensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **unused: torch.Tensor,
    ) -> TokenClassifierOutput:
        """input_ids, bbox, attention_mask, token_type_ids: the text part (B, T); labels (B, T):
        tag ids on each word's first token, -100 elsewhere. Logits (B, T, tags) cover the text
        positions only. Extra processor keys (word_ids) are accepted and ignored."""
        with self._autocast():
            outputs, _ = self.encode(input_ids, bbox, attention_mask, pixel_values, token_type_ids)
            text_states = outputs.last_hidden_state[:, self.config.num_visual_tokens :]
            logits = self.classifier(self.dropout(text_states))
        loss = _masked_cross_entropy(logits, labels) if labels is not None else None
        return TokenClassifierOutput(loss=loss, logits=logits.float())


class DocFormerV2ForConditionalGeneration(DocFormerV2PreTrainedModel):
    # The encoder never looks up token ids itself (it gets inputs_embeds) but T5Stack owns an
    # embedding table: tie it too, so it is neither trained, saved twice nor reported missing.
    _tied_weights_keys = {
        "encoder.embed_tokens.weight": "shared.weight",
        "decoder.embed_tokens.weight": "shared.weight",
        "lm_head.weight": "shared.weight",
    }
    _keys_to_ignore_on_load_unexpected = [
        "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
        # A pre-training checkpoint's encoder heads: generation does not use them.
        r"^line_head\.",
        r"^grid_head\.",
    ]
    # DocFormerV2ForPreTraining adds the token-to-line and token-to-grid heads.
    has_pretraining_heads = False

    def __init__(self, config: DocFormerV2Config):
        super().__init__(config)
        self._build_encoder(config)

        decoder_config = copy.deepcopy(config)
        decoder_config.is_decoder = True
        decoder_config.num_layers = config.num_decoder_layers
        self.decoder = T5Stack(decoder_config)

        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if self.has_pretraining_heads:
            self.line_head = TokenToLineHead(config)
            self.grid_head = TokenToGridHead(config)
        self.copy_head = CopyHead(config) if config.copy_mechanism else None
        self.post_init()

    def _shift_right(self, labels: torch.LongTensor) -> torch.LongTensor:
        # T5 convention: the decoder starts from the pad token; -100 (ignored) becomes pad.
        shifted = labels.new_full(labels.shape, self.config.decoder_start_token_id)
        shifted[:, 1:] = labels[:, :-1]
        return shifted.masked_fill(shifted == IGNORE_INDEX, self.config.pad_token_id)

    # --- forward ------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor,
        bbox: torch.LongTensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        line_pairs: torch.LongTensor | None = None,
        line_labels: torch.LongTensor | None = None,
        grid_labels: torch.LongTensor | None = None,
        encoder_outputs: BaseModelOutput | None = None,
        word_ids: torch.LongTensor | None = None,
    ) -> DocFormerV2Output:
        """All shapes are batch-first; text positions (T) exclude the visual tokens.

        input_ids, bbox (B, T, 4, ints 0..1000), attention_mask, token_type_ids: the text part.
        pixel_values (B, C, H, W). labels (B, L): decoder targets, -100 ignored.
        line_pairs (B, P, 2) text positions, line_labels (B, P) in {0, 1, 2} or -100.
        grid_labels (B, T): cell index or -100 (sentinels, prompt, padding).
        word_ids is accepted and unused, so a processor batch can be passed as `**batch`.
        The decoder runs only when labels or decoder_input_ids are given.
        """
        with self._autocast():
            if encoder_outputs is None:
                encoder_outputs, full_mask = self.encode(
                    input_ids, bbox, attention_mask, pixel_values, token_type_ids
                )
            else:
                visual_mask = attention_mask.new_ones(
                    attention_mask.size(0), self.config.num_visual_tokens
                )
                full_mask = torch.cat([visual_mask, attention_mask], dim=1)
            encoder_states = encoder_outputs.last_hidden_state
            text_states = encoder_states[:, self.config.num_visual_tokens :]

            logits = mlm_loss = line_logits = line_loss = grid_logits = grid_loss = None
            if labels is not None or decoder_input_ids is not None:
                if decoder_input_ids is None:
                    decoder_input_ids = self._shift_right(labels)
                decoder_states = self.decoder(
                    input_ids=decoder_input_ids,
                    attention_mask=decoder_attention_mask,
                    encoder_hidden_states=encoder_states,
                    encoder_attention_mask=full_mask,
                    use_cache=False,
                ).last_hidden_state
                logits = self.output_logits(
                    decoder_states,
                    text_states,
                    input_ids,
                    attention_mask,
                    token_type_ids,
                    decoder_input_ids,
                )
                if labels is not None:
                    mlm_loss = F.cross_entropy(
                        logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
                    )
            if (line_pairs is not None or grid_labels is not None) and not (
                self.has_pretraining_heads
            ):
                raise ValueError("line and grid targets need DocFormerV2ForPreTraining")
            if line_pairs is not None:
                line_logits = self.line_head(text_states, line_pairs.clamp(min=0))
                if line_labels is not None:
                    line_loss = _masked_cross_entropy(line_logits, line_labels)
            if grid_labels is not None:
                grid_logits = self.grid_head(text_states)
                grid_loss = _masked_cross_entropy(grid_logits, grid_labels)

        weighted = [
            (mlm_loss, self.config.mlm_loss_weight),
            (line_loss, self.config.line_loss_weight),
            (grid_loss, self.config.grid_loss_weight),
        ]
        present = [weight * value for value, weight in weighted if value is not None]
        return DocFormerV2Output(
            loss=sum(present) if present else None,
            mlm_loss=mlm_loss,
            line_loss=line_loss,
            grid_loss=grid_loss,
            logits=logits,
            line_logits=line_logits,
            grid_logits=grid_logits,
            encoder_last_hidden_state=encoder_states,
            encoder_attention_mask=full_mask,
        )

    def output_logits(
        self,
        decoder_states: torch.Tensor,
        text_states: torch.Tensor,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.LongTensor | None,
        decoder_input_ids: torch.LongTensor,
    ) -> torch.Tensor:
        """Next-token scores (B, L, V): the LM head's logits, or with the copy mechanism the
        log-probabilities of the vocabulary/copy mixture (softmax of either is the distribution).
        Copyable: attended OCR positions (token type 0), never the prompt or special tokens.
        decoder_input_ids: the inputs of the decoder states, or (generation) every input so far."""
        lm_logits = self.lm_head(self._scale_for_tied_head(decoder_states))
        if self.copy_head is None:
            return lm_logits
        copyable = attention_mask.bool()
        if token_type_ids is not None:
            copyable &= token_type_ids == 0
        return self.copy_head(
            decoder_states, lm_logits, text_states, input_ids, copyable, decoder_input_ids
        )

    def _scale_for_tied_head(self, decoder_states: torch.Tensor) -> torch.Tensor:
        # T5 rescales before a head tied to the (unit-scale) input embeddings.
        if self.config.scale_decoder_outputs:
            return decoder_states * (self.config.d_model**-0.5)
        return decoder_states

    # --- generation ---------------------------------------------------------------------
    @torch.no_grad()
    def generate_answers(
        self,
        input_ids: torch.LongTensor,
        bbox: torch.LongTensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        token_type_ids: torch.LongTensor | None = None,
        max_new_tokens: int = 32,
        constraint: GenerationRule | None = None,
        **unused: torch.Tensor,
    ) -> GreedyGeneration:
        """Batched greedy decoding on cached encoder outputs.

        Returns the chosen ids and the softmax probability of each (see `GreedyGeneration`);
        `DocFormerV2Processor.decode_answers` turns them into text + confidence. Extra keys of a
        processor batch (word_ids, page_index, ...) are ignored so it can be passed as `**batch`.

        `constraint` rules out tokens before each choice (extraction passes
        `docformer.generation.PageSpanConstraint`); without one, the config's n-gram rule applies.
        """
        eos, pad = self.config.eos_token_id, self.config.pad_token_id
        batch = input_ids.size(0)
        with self._autocast():
            encoder_outputs, full_mask = self.encode(
                input_ids, bbox, attention_mask, pixel_values, token_type_ids
            )
            text_states = encoder_outputs.last_hidden_state[:, self.config.num_visual_tokens :]
            cache = EncoderDecoderCache(
                DynamicCache(config=self.config), DynamicCache(config=self.config)
            )
            next_input = input_ids.new_full((batch, 1), self.config.decoder_start_token_id)
            history = next_input  # every decoder input so far, for the copy head's follows
            finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
            rule = constraint or NoRepeatNGram(batch, self.config.no_repeat_ngram_size)
            tokens, probs = [], []
            for _ in range(max_new_tokens):
                out = self.decoder(
                    input_ids=next_input,
                    encoder_hidden_states=encoder_outputs.last_hidden_state,
                    encoder_attention_mask=full_mask,
                    past_key_values=cache,
                    use_cache=True,
                )
                cache = out.past_key_values
                step_logits = self.output_logits(
                    out.last_hidden_state[:, -1:],
                    text_states,
                    input_ids,
                    attention_mask,
                    token_type_ids,
                    history,
                )[:, 0]
                step_probs = step_logits.float().softmax(-1)
                allowed = rule.mask(step_probs)
                token = allowed.argmax(-1)
                if rule.conditional_confidence:
                    allowed = allowed.clamp_min(0.0)
                    prob = allowed.gather(-1, token[:, None])[:, 0] / allowed.sum(-1).clamp_min(
                        torch.finfo(allowed.dtype).tiny
                    )
                    prob = prob.clamp_min(torch.finfo(prob.dtype).tiny)  # > 0: counted in lengths
                else:
                    prob = step_probs.gather(-1, token[:, None])[:, 0]
                token = token.masked_fill(finished, pad)
                prob = prob.masked_fill(finished, 0.0)
                tokens.append(token)
                probs.append(prob)
                rule.add(token)
                finished |= token == eos
                if finished.all():
                    break
                next_input = token[:, None]
                history = torch.cat([history, next_input], 1)
        sequences = torch.stack(tokens, 1)
        token_probs = torch.stack(probs, 1)
        return GreedyGeneration(
            sequences=sequences, token_probs=token_probs, lengths=(token_probs > 0).sum(1)
        )


class DocFormerV2ForPreTraining(DocFormerV2ForConditionalGeneration):
    """The generator with the two encoder heads of pre-training (token-to-line, token-to-grid):
    `docformer pretrain` trains all three tasks at once. Fine-tuning loads its weights into
    `DocFormerV2ForConditionalGeneration` or `DocFormerV2ForTokenClassification`, which leave
    these heads behind."""

    _keys_to_ignore_on_load_unexpected = [
        "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
    ]
    has_pretraining_heads = True


class GenerationRule(Protocol):
    """What greedy decoding asks of a rule on the next token: `mask` sets the probability of
    every token it rules out to -1 before the choice, `add` hears the (B,) tokens chosen.

    `conditional_confidence`: whether the probability reported for a token is the model's own
    renormalised over the tokens the rule allows (a rule that states what an answer can be:
    the model's confidence is then its preference among those) or its own unconditioned (a
    rule that only blocks a failure: an answer chosen because its loop was blocked is not a
    confident one)."""

    conditional_confidence: bool

    def mask(self, probs: torch.Tensor) -> torch.Tensor: ...

    def add(self, tokens: torch.Tensor) -> None: ...


class NoRepeatNGram:
    """Greedy decoding's rule that no n tokens are written twice in one sequence (the same
    rule as `no_repeat_ngram_size` in `transformers`' generation), kept incrementally: per
    row, each (n-1)-token prefix seen so far maps to the tokens that followed it."""

    conditional_confidence = False

    def __init__(self, batch: int, size: int):
        self.size = size
        self.history: list[list[int]] = [[] for _ in range(batch)]
        self.followers: list[dict[tuple[int, ...], set[int]]] = [{} for _ in range(batch)]

    def mask(self, probs: torch.Tensor) -> torch.Tensor:
        """`probs` (B, V) with the tokens that would repeat an n-gram set to -1."""
        if self.size <= 0:
            return probs
        banned = [
            (row, token)
            for row, history in enumerate(self.history)
            if len(history) >= self.size - 1
            for token in self.followers[row].get(tuple(history[len(history) - self.size + 1 :]), ())
        ]
        if not banned:
            return probs
        rows, tokens = zip(*banned, strict=True)
        probs = probs.clone()
        probs[list(rows), list(tokens)] = -1.0
        return probs

    def add(self, tokens: torch.Tensor) -> None:
        if self.size <= 0:
            return
        for row, token in enumerate(tokens.tolist()):
            history = self.history[row]
            if len(history) >= self.size - 1:
                prefix = tuple(history[len(history) - self.size + 1 :])
                self.followers[row].setdefault(prefix, set()).add(token)
            history.append(token)


def _masked_cross_entropy(logits: torch.Tensor, targets: torch.LongTensor) -> torch.Tensor:
    """Cross-entropy over positions whose target is not -100; 0 (still differentiable) when none."""
    flat_logits, flat_targets = logits.float().flatten(0, -2), targets.flatten()
    if not (flat_targets != IGNORE_INDEX).any():
        return flat_logits.sum() * 0.0
    return F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE_INDEX)


__all__ = [
    "DocFormerV2ForConditionalGeneration",
    "DocFormerV2ForPreTraining",
    "DocFormerV2ForTokenClassification",
    "DocFormerV2Model",
    "DocFormerV2PreTrainedModel",
    "DocFormerV2Output",
    "GenerationRule",
    "GreedyGeneration",
    "NoRepeatNGram",
]
