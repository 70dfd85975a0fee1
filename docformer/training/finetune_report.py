"""What a fine-tuning run reports, for the generator's loop (`finetune.py`) and the tagger's
(`tagging.py`) alike: the scores of a validation (`score_extractions`: per field, overall, and
the reliability table of confidences) and one printed line per log record (`print_record`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from docformer.metrics import normalize_value, reliability_table, score_fields
from docformer.training.data import TrainingExample


def score_extractions(
    results: Sequence[dict[str, Any]],
    examples: Sequence[TrainingExample],
    fields: Sequence[str],
) -> dict[str, Any]:
    """Scores extracted fields (`ExtractedField` per name; absent = not found) against labels:
    per field and overall, and the reliability table over every document x field (an absent
    field counts with confidence 0)."""
    predictions = [{name: f.value for name, f in doc.items()} for doc in results]
    labels = [example.fields for example in examples]
    scores = score_fields(predictions, labels, fields)
    confidences, correct = [], []
    for doc, label in zip(results, labels, strict=True):
        for name in fields:
            found = doc.get(name)
            confidences.append(found.confidence if found is not None else 0.0)
            value = found.value if found is not None else ""
            correct.append(normalize_value(value) == normalize_value(label.get(name)))
    return {
        "fields": {name: score.to_dict() for name, score in scores.items() if name != "overall"},
        "overall": scores["overall"].to_dict(),
        "reliability": [b.to_dict() for b in reliability_table(confidences, correct)],
        "documents": len(examples),
    }


def print_record(record: dict[str, Any]) -> None:
    """One plain, flushed line per log record (terminals and `nohup` logs alike)."""
    if "message" in record:
        print(record["message"], flush=True)
    elif "evaluation" in record:
        e = record["evaluation"]
        print(
            f"eval  step {e['step']:>6} | F1 {e['f1']:.4f} ANLS {e['anls']:.4f} "
            f"P {e['precision']:.4f} R {e['recall']:.4f}",
            flush=True,
        )
    elif "early_stop" in record:
        print(f"early stop at step {record['early_stop']}: best F1 {record['best_f1']:.4f} "
              f"at step {record['best_step']}", flush=True)  # fmt: skip
    else:
        print(
            f"step {record['step']:>6} | epoch {record['epoch']:.2f} | loss {record['loss']:.4f} "
            f"| lr {record['lr']:.2e} | {record['elapsed_s']:.0f} s",
            flush=True,
        )
