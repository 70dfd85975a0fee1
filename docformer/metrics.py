"""Extraction scores: SROIE-style precision / recall / F1 and ANLS, per field and overall.

Comparison follows the SROIE key-information task: a predicted value is correct when it equals
the labelled value after trimming and collapsing runs of whitespace (case and punctuation count).
Per field over a set of documents:

- true positive: labelled, predicted, equal;
- false positive: predicted but wrong, or predicted where the document has no such field;
- false negative: labelled but predicted wrong or not at all
  (a wrong prediction is both a false positive and a false negative, as in SROIE);
- "overall" is the micro average over every (document, field) pair.

ANLS (average normalised Levenshtein similarity, Biten et al. 2019) over the labelled pairs:
1 - normalised edit distance, counted as 0 when that distance is 0.5 or more; an empty prediction
for a labelled field scores 0. It credits near misses that exact match does not.

Beside the exact counts, every score also counts matches that ignore letter case
(`*_case_insensitive`). Labelling conventions differ in case alone (SROIE labels are upper case,
"22 MAR 18", where the receipt prints "22 Mar 18"), so the gap between the two F1s tells how much
of the exact-match loss is only a matter of convention and how much is reading the wrong text.
The exact figures stay the headline ones and keep their names; the other ones are always named
as case-insensitive, so neither can be taken for the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from rapidfuzz.distance import Levenshtein

ANLS_THRESHOLD = 0.5


def normalize_value(value: object) -> str:
    """Trim and collapse whitespace; None is the empty string."""
    return " ".join(str(value).split()) if value is not None else ""


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def anls(prediction: object, gold: object) -> float:
    prediction, gold = normalize_value(prediction), normalize_value(gold)
    if not gold and not prediction:
        return 1.0
    distance = Levenshtein.normalized_distance(prediction, gold)
    return 0.0 if distance >= ANLS_THRESHOLD else 1.0 - distance


@dataclass
class FieldScore:
    field: str
    support: int = 0  # documents labelled with this field
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    anls_sum: float = 0.0
    # The same counts with letter case ignored (see the module docstring).
    true_positives_case_insensitive: int = 0
    false_positives_case_insensitive: int = 0
    false_negatives_case_insensitive: int = 0

    @property
    def precision(self) -> float:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else 0.0

    @property
    def recall(self) -> float:
        labelled = self.true_positives + self.false_negatives
        return self.true_positives / labelled if labelled else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def anls(self) -> float:
        return self.anls_sum / self.support if self.support else 0.0

    @property
    def precision_case_insensitive(self) -> float:
        return _ratio(
            self.true_positives_case_insensitive,
            self.true_positives_case_insensitive + self.false_positives_case_insensitive,
        )

    @property
    def recall_case_insensitive(self) -> float:
        return _ratio(
            self.true_positives_case_insensitive,
            self.true_positives_case_insensitive + self.false_negatives_case_insensitive,
        )

    @property
    def f1_case_insensitive(self) -> float:
        p, r = self.precision_case_insensitive, self.recall_case_insensitive
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, other: FieldScore) -> None:
        self.support += other.support
        self.true_positives += other.true_positives
        self.false_positives += other.false_positives
        self.false_negatives += other.false_negatives
        self.anls_sum += other.anls_sum
        self.true_positives_case_insensitive += other.true_positives_case_insensitive
        self.false_positives_case_insensitive += other.false_positives_case_insensitive
        self.false_negatives_case_insensitive += other.false_negatives_case_insensitive

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            **asdict(self),
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "anls": self.anls,
            "precision_case_insensitive": self.precision_case_insensitive,
            "recall_case_insensitive": self.recall_case_insensitive,
            "f1_case_insensitive": self.f1_case_insensitive,
        }


def score_fields(
    predictions: Sequence[Mapping[str, object]],
    labels: Sequence[Mapping[str, object]],
    fields: Sequence[str] | None = None,
) -> dict[str, FieldScore]:
    """Per-field scores plus "overall", for predictions[i] against labels[i].

    `fields` defaults to every field named in the labels; empty or None values mean absent.
    Each score carries the exact counts and, beside them, the counts with case ignored.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labelled documents")
    if fields is None:
        fields = sorted({name for label in labels for name, v in label.items() if v is not None})
    scores = {name: FieldScore(name) for name in fields}
    for predicted, gold in zip(predictions, labels, strict=True):
        for name in fields:
            p, g = normalize_value(predicted.get(name)), normalize_value(gold.get(name))
            score = scores[name]
            if g:
                score.support += 1
                score.anls_sum += anls(p, g)
                if p == g:
                    score.true_positives += 1
                else:
                    score.false_negatives += 1
                    score.false_positives += bool(p)
                # casefold, not lower: it is meant for caseless matching ("ß" ~ "SS").
                if p.casefold() == g.casefold():
                    score.true_positives_case_insensitive += 1
                else:
                    score.false_negatives_case_insensitive += 1
                    score.false_positives_case_insensitive += bool(p)
            elif p:
                score.false_positives += 1
                score.false_positives_case_insensitive += 1
    overall = FieldScore("overall")
    for score in scores.values():
        overall.add(score)
    return {**scores, "overall": overall}


@dataclass
class ReliabilityBucket:
    low: float
    high: float
    count: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, float]:
        return {
            "low": self.low,
            "high": self.high,
            "count": self.count,
            "correct": self.correct,
            "accuracy": self.accuracy,
        }


def reliability_table(
    confidences: Sequence[float], correct: Sequence[bool], edges: Sequence[float] | None = None
) -> list[ReliabilityBucket]:
    """Confidence bucket -> how often answers in it were right (a calibration check)."""
    edges = list(edges or (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0))
    buckets = [ReliabilityBucket(lo, hi, 0, 0) for lo, hi in zip(edges, edges[1:], strict=False)]
    for confidence, ok in zip(confidences, correct, strict=True):
        for i, bucket in enumerate(buckets):
            last = i == len(buckets) - 1
            if bucket.low <= confidence < bucket.high or (last and confidence >= bucket.low):
                bucket.count += 1
                bucket.correct += bool(ok)
                break
    return buckets


__all__ = [
    "FieldScore",
    "ReliabilityBucket",
    "anls",
    "normalize_value",
    "reliability_table",
    "score_fields",
]
