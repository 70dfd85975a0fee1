"""DocFormerv2 with its decoder: the plain T5 text decoder on the multimodal encoder of
`modeling_docformerv2.py`, the LM head tied to the shared embeddings, and `CopyHead`
(`layers_docformerv2.py`, on by default) mixing in copying of the page's OCR tokens.

- `DocFormerV2ForConditionalGeneration` - the generator, for free-form prompts (document VQA,
  table QA, "extract: X") and the generation extraction head. `generate_answers` is a batched
  greedy decoder over cached encoder outputs that returns the token ids together with the
  probability of each chosen token (the extraction confidence), as a `GreedyGeneration`.
- `DocFormerV2ForPreTraining` - the generator plus the two encoder heads of pre-training,
  token-to-line and token-to-grid, for `docformer pretrain`. Positions given to them
  (`line_pairs`, `grid_labels`) index the TEXT part of the encoder sequence, i.e. the
  processor's `input_ids` positions; the model adds the visual offset itself. Its losses come
  back one by one in `DocFormerV2Output`.
- `GenerationRule` - what greedy decoding asks of a rule on the next token; `NoRepeatNGram` is
  the default one (`docformer.generation.PageSpanConstraint` is extraction's).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.t5.modeling_t5 import T5Stack
from transformers.utils import ModelOutput

from docformer.models.docformerv2.configuration_docformerv2 import DocFormerV2Config
from docformer.models.docformerv2.layers_docformerv2 import (
    CopyHead,
    TokenToGridHead,
    TokenToLineHead,
)
from docformer.models.docformerv2.modeling_docformerv2 import (
    IGNORE_INDEX,
    DocFormerV2PreTrainedModel,
    _masked_cross_entropy,
)


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


__all__ = [
    "DocFormerV2ForConditionalGeneration",
    "DocFormerV2ForPreTraining",
    "DocFormerV2Output",
    "GenerationRule",
    "GreedyGeneration",
    "NoRepeatNGram",
]
