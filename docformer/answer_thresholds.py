"""When to leave a field unanswered: a confidence threshold per field, learned on validation.

A tagger offers a field wherever some run of words is at least a little likely to be it
(`docformer.tagging.MIN_START_PROBABILITY`), which is right for a field every document has and
wrong for one that many documents lack: an invoice number or a tax line is absent from half of
the documents, and a doubtful answer there is a false positive where no answer would have been
correct. Under SROIE-style scoring (`docformer.metrics`) a wrong answer also costs more than no
answer (it is a false positive and a false negative), so even a field every document has gains
from leaving its least sure answers out.

`learn_answer_thresholds` picks, per field, the confidence below which an answer is dropped:
the threshold that maximises that field's F1 on the validation documents, read by the model
being trained. It is decided only on at least `MIN_ANSWERS` answers (fewer would fit the noise
of a few documents) and kept only when it raises the field's F1 on them; ties go to the lowest
threshold, which drops the fewest answers. The thresholds are saved in the model's config
(`config.answer_thresholds`) and the `Extractor` applies them to whatever head it runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from docformer.metrics import normalize_value

# The fewest validation answers of a field a threshold is decided on.
MIN_ANSWERS = 20


def _f1(true_positives: int, answers: int, support: int) -> float:
    return 2 * true_positives / (answers + support) if answers + support else 0.0


def learn_answer_thresholds(
    predictions: Sequence[Mapping[str, tuple[str, float]]],
    labels: Sequence[Mapping[str, object]],
    fields: Sequence[str],
) -> dict[str, float]:
    """Per field, the confidence an answer needs to be given; fields where no threshold helps
    are left out. `predictions[i]` maps field -> (value, confidence) for document i, `labels[i]`
    its labelled values (empty or missing: the document lacks the field)."""
    thresholds: dict[str, float] = {}
    for name in fields:
        answers, support = [], 0
        for predicted, gold in zip(predictions, labels, strict=True):
            expected = normalize_value(gold.get(name))
            support += bool(expected)
            if name in predicted and normalize_value(predicted[name][0]):
                value, confidence = predicted[name]
                answers.append(
                    (float(confidence), bool(expected) and normalize_value(value) == expected)
                )
        if len(answers) < MIN_ANSWERS:
            continue
        answers.sort(key=lambda answer: answer[0])
        correct_total = sum(correct for _, correct in answers)
        best_f1 = _f1(correct_total, len(answers), support)
        best_threshold = None
        correct_below = 0
        for dropped, (confidence, correct) in enumerate(answers, start=1):
            correct_below += correct
            next_confidence = answers[dropped][0] if dropped < len(answers) else None
            if next_confidence == confidence:
                continue  # a threshold cannot split equal confidences
            f1 = _f1(correct_total - correct_below, len(answers) - dropped, support)
            if f1 > best_f1:
                best_f1 = f1
                # Halfway to the next answer kept, so a slightly surer answer is not cut.
                best_threshold = (
                    (confidence + next_confidence) / 2 if next_confidence is not None
                    else min(1.0, confidence + 1e-6)
                )  # fmt: skip
        if best_threshold is not None:
            thresholds[name] = round(best_threshold, 6)
    return thresholds


def drop_unsure(fields: dict[str, Any], thresholds: Mapping[str, float]) -> None:
    """Remove from `fields` (name -> anything with a `.confidence`) the answers below their
    field's threshold."""
    for name, threshold in thresholds.items():
        if name in fields and fields[name].confidence < threshold:
            del fields[name]


def thresholds_from_config(config_value: Mapping[str, object] | None) -> dict[str, float]:
    """`config.answer_thresholds` as {field: threshold} (None or empty: no thresholds)."""
    return {str(name): float(value) for name, value in (config_value or {}).items()}


__all__ = ["MIN_ANSWERS", "drop_unsure", "learn_answer_thresholds", "thresholds_from_config"]
