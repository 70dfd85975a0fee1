"""DocFormerv2 (Appalaraju et al., AAAI 2024): configuration, model and processor."""

from docformer.models.docformerv2.configuration_docformerv2 import PRESETS, DocFormerV2Config
from docformer.models.docformerv2.generation_docformerv2 import (
    DocFormerV2ForConditionalGeneration,
    DocFormerV2ForPreTraining,
    DocFormerV2Output,
    GreedyGeneration,
)
from docformer.models.docformerv2.modeling_docformerv2 import (
    DocFormerV2ForTokenClassification,
    DocFormerV2Model,
    DocFormerV2PreTrainedModel,
)
from docformer.models.docformerv2.processing_docformerv2 import (
    Answer,
    DocFormerV2Processor,
    EncoderRow,
    PageTokens,
    merge_window_answers,
    normalize_boxes,
)

__all__ = [
    "PRESETS",
    "Answer",
    "DocFormerV2Config",
    "DocFormerV2ForConditionalGeneration",
    "DocFormerV2ForPreTraining",
    "DocFormerV2ForTokenClassification",
    "DocFormerV2Model",
    "DocFormerV2Output",
    "DocFormerV2PreTrainedModel",
    "DocFormerV2Processor",
    "EncoderRow",
    "GreedyGeneration",
    "PageTokens",
    "merge_window_answers",
    "normalize_boxes",
]
