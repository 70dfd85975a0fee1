"""DocFormerv2: a T5 encoder-decoder that reads a page (patches + OCR tokens with boxes).

The family is split in three files, read in this order:

1. `layers_docformerv2.py` - the building blocks: `VisualEmbeddings` (the light visual branch,
   a linear projection of image patches plus a learned position per patch), `SpatialEmbeddings`
   (summed embeddings of x0, y0, x1, y1, width and height, shared by words and patches), the
   two pre-training heads and `CopyHead`.
2. This file - the multimodal encoder every head shares (`DocFormerV2PreTrainedModel`), the bare
   encoder (`DocFormerV2Model`) and the encoder-only tagging head
   (`DocFormerV2ForTokenClassification`).
3. `generation_docformerv2.py` - the decoder: `DocFormerV2ForConditionalGeneration` (free-form
   prompts and the generator, with the batched greedy `generate_answers`) and
   `DocFormerV2ForPreTraining` (the generator plus the token-to-line and token-to-grid heads,
   for `docformer pretrain`).

The encoder input is [visual tokens ; text tokens] fed to a T5 encoder as `inputs_embeds`,
each position carrying a modality embedding: 0 = visual patch, 1 = OCR text, 2 = prompt or
special token. Three modalities rather than two because a prompt token has no place on the
page (it gets the full-page box) and would otherwise look like an OCR word spanning the page.

Attention: transformers 5's T5 supports `attn_implementation="sdpa"` (the default picked here
when available). T5's relative position bias cannot be expressed as a causal flag, so SDPA is
given the bias (plus the padding mask) as an additive float mask: this rules out the flash
kernel but keeps the fused memory-efficient/math kernels; "eager" gives the same numbers.

All classes share `DocFormerV2PreTrainedModel`'s encoder and weight names, so each loads the
encoder of any other's checkpoint.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput, TokenClassifierOutput
from transformers.models.t5.modeling_t5 import T5PreTrainedModel, T5Stack

from docformer.models.docformerv2.configuration_docformerv2 import DocFormerV2Config
from docformer.models.docformerv2.layers_docformerv2 import (
    CopyHead,
    SpatialEmbeddings,
    VisualEmbeddings,
)

MODALITY_VISUAL, MODALITY_TEXT, MODALITY_PROMPT = 0, 1, 2
IGNORE_INDEX = -100


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


def _masked_cross_entropy(logits: torch.Tensor, targets: torch.LongTensor) -> torch.Tensor:
    """Cross-entropy over positions whose target is not -100; 0 (still differentiable) when none."""
    flat_logits, flat_targets = logits.float().flatten(0, -2), targets.flatten()
    if not (flat_targets != IGNORE_INDEX).any():
        return flat_logits.sum() * 0.0
    return F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE_INDEX)


__all__ = [
    "DocFormerV2ForTokenClassification",
    "DocFormerV2Model",
    "DocFormerV2PreTrainedModel",
]
