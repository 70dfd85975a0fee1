"""What a fine-tuned version is compared on, and what keeps it from being promoted.

The promoted version's field list drives production (digitize extracts the fields its model
reads), so the comparison protects the active version's fields, not only the fields of the
labels at hand:

- both versions are scored on the active version's whole field set plus the candidate's
  (`compared_fields`); a field a version cannot read scores zero, wherever it is labelled;
- a (document, field) pair is judged only when the document's labels name the field: an import
  that labels only `total` says nothing about `company`, so neither version is counted wrong
  for reading a company there (labelling a field as empty still judges it);
- every compared field needs at least `min_holdout` labelled holdout documents: fewer cannot
  tell a better version from luck, and a field nobody labelled cannot be shown to survive;
- a candidate that cannot read a field the active version reads is not promoted unless
  `allow_fewer_fields` says so explicitly;
- and it must beat the active version's holdout F1 by more than the margin.

Only documents whose labels name every field the run trains on are held out (`fields_to_train`;
an import of `total` alone, or a review of two fields of five, does not cover five). One the
hash split sends to the holdout without that is left out of the run, counted in the run's
metrics as `left_out_of_holdout`.

`promotion_blockers` reads all of it from the comparison a run stores, so the decision and the
sentence that explains it (`flows.finetune.promotion_reason`) come from one place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def model_fields(model_dir: str | Path) -> list[str]:
    """The fields digitize extracts with the model in `model_dir`, by the rule
    `docformer.extraction.Extractor.from_pretrained` applies: a tagger reads the fields it was
    trained on (metrics.json "fields") that its head knows, else its whole schema; a generator
    answers its trained fields, else the default ones."""
    from docformer.generation import DEFAULT_FIELDS
    from docformer.models.docformerv2 import DocFormerV2Config

    trained = _trained_fields(Path(model_dir))
    schema = DocFormerV2Config.from_pretrained(model_dir).tagging_fields
    if schema:
        return [name for name in (trained or schema) if name in schema]
    return list(trained or DEFAULT_FIELDS)


def _trained_fields(model_dir: Path) -> list[str] | None:
    path = model_dir / "metrics.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return None  # extraction falls back to the defaults for it too
    fields = info.get("fields") if isinstance(info, dict) else None
    if isinstance(fields, list) and fields and all(isinstance(name, str) for name in fields):
        return fields
    return None


def fields_to_train(
    base_dir: str | Path, fields: Sequence[str] | None, examples: Sequence[Any]
) -> list[str]:
    """The fields a fine-tuning run from the model in `base_dir` trains on, resolved as the
    trainer resolves them: `fields`, else a tagging base's own fields, else every field the
    labels of `examples` give a value (`default_fields`). A document goes into the holdout
    only when its labels name every one of them (`split_examples_covering`): the trainer reads
    a field a document's labels do not name as "not on this document", so such a document
    would score the model against a wrong truth."""
    from docformer.models.docformerv2 import DocFormerV2Config
    from docformer.training.finetune import default_fields

    if fields:
        return list(fields)
    schema = DocFormerV2Config.from_pretrained(base_dir).tagging_fields
    return list(schema or default_fields(list(examples)))


def compared_fields(active_fields: Sequence[str], new_fields: Sequence[str]) -> list[str]:
    """The active version's fields, then the ones only the candidate reads."""
    return [*active_fields, *(name for name in new_fields if name not in active_fields)]


def labelled_documents_per_field(examples: Sequence[Any], fields: Sequence[str]) -> dict[str, int]:
    """For each of `fields`, how many of `examples` have a label for it (the pairs judged)."""
    return {name: sum(name in example.fields for example in examples) for name in fields}


def evaluate_on_fields(
    model_dir: str | Path, examples: Sequence[Any], fields: Sequence[str], device: str = "auto"
) -> dict[str, Any]:
    """Scores of the model in `model_dir` on labelled `examples` over `fields` (the result of
    `docformer.training.finetune_report.score_extractions`). Fields the model cannot read are not
    asked of it and score zero where labelled; a field a document's labels do not name is not
    judged on that document."""
    from docformer.extraction import Extractor, load_model, resolve_device
    from docformer.models.docformerv2 import DocFormerV2Processor
    from docformer.training.finetune_report import score_extractions

    readable = [name for name in fields if name in model_fields(model_dir)]
    results: list[dict[str, Any]] = [{} for _ in examples]
    if readable and examples:
        model = load_model(model_dir)
        model.to(resolve_device(device))
        processor = DocFormerV2Processor.from_pretrained(model_dir)
        extractor = Extractor(model, processor, name="holdout", fields=readable)
        units = [[(i, image, ocr) for i, (image, ocr) in enumerate(e.pages)] for e in examples]
        results = extractor.extract_units(units)
    judged = [
        {name: found for name, found in result.items() if name in example.fields}
        for result, example in zip(results, examples, strict=True)
    ]
    return score_extractions(judged, examples, list(fields))


def promotion_blockers(comparison: dict[str, Any]) -> list[str]:
    """Why the candidate of a stored comparison must not be promoted, one clause per reason;
    empty when it may be. Comparisons stored before these rules lack their keys and are
    judged by the margin alone."""
    blockers = []
    active = comparison["active_version"]
    dropped = comparison.get("fields_dropped") or []
    if dropped and not comparison.get("allow_fewer_fields"):
        blockers.append(
            f"it cannot read {', '.join(dropped)}, which {active} reads (only "
            "allow_fewer_fields promotes a version with fewer fields)"
        )
    minimum = comparison.get("min_holdout") or 0
    labelled = comparison.get("holdout_labels") or {}
    too_few = [f"{name} {count}" for name, count in labelled.items() if count < minimum]
    if too_few:
        blockers.append(
            f"the holdout has fewer than {minimum} labelled documents for a field it compares "
            f"({', '.join(too_few)})"
        )
    margin = comparison["promote_margin"]
    if not comparison["new_f1"] > comparison["active_f1"] + margin:
        blockers.append(f"not better by more than the margin {margin}")
    return blockers
