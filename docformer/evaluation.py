"""Evaluation of an extractor on a labelled folder: per-field and overall precision, recall, F1
and ANLS (`docformer.metrics`), how well confidence predicts correctness, and speed. F1 is shown
twice, exact (the SROIE rule) and ignoring case, so a loss that is only labelling convention
("22 Mar 18" for "22 MAR 18") can be told from a wrong reading.

    docformer eval --data DIR [--model DIR] [--json] [--limit N] [--ocr-cache DIR] [--val-split F]

The folder follows `docformer.labelled`: documents, `<name>.json` labels, optional
`<name>.ocr.json`. Documents without OCR are OCRed; with `--ocr-cache` the results are kept
under it by (sha256, page, OCR engine), so a second evaluation (another model, another
checkpoint) does not OCR again. A document that cannot be read or extracted counts as predicting
nothing (its labelled fields are false negatives) and is listed under "errors". `--val-split F`
evaluates only the documents `docformer finetune --val-split F` holds out of the same folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from docformer.document import Document
from docformer.extraction import Extractor, describe_error
from docformer.extraction_cli import parse_fields
from docformer.labelled import LabelledExample, iter_labelled_folder
from docformer.metrics import (
    FieldScore,
    ReliabilityBucket,
    normalize_value,
    reliability_table,
    score_fields,
)
from docformer.ocr.cache import FolderOCRCache, OCRCacheStore
from docformer.reader import OCR_DPI, DocumentReader
from docformer.training.data import split_examples

logger = logging.getLogger(__name__)


# --- reading -----------------------------------------------------------------------------------


def load_example(example: LabelledExample, reader: DocumentReader | None = None) -> Document:
    """A labelled document with every page's OCR: the folder's own `.ocr.json` when there is
    one, else the reader's cache, else PaddleOCR (and the cache is filled)."""
    reader = reader or DocumentReader()
    return reader.read_path(example.document_path, supplied_ocr=example.ocr_pages, dpi=OCR_DPI)


# --- evaluation -------------------------------------------------------------------------------


@dataclass
class EvaluationReport:
    model: str
    fields: list[str]
    documents: int
    pages: int
    scores: dict[str, FieldScore]  # per field and "overall"
    reliability: list[ReliabilityBucket]  # over every non-empty predicted field
    seconds: float  # everything: reading, OCR, extraction
    extract_seconds: float  # the model alone
    errors: list[dict[str, str]] = field(default_factory=list)  # {"name", "code", "message"}
    predictions: list[dict[str, str]] = field(default_factory=list)  # per document, in order

    @property
    def seconds_per_page(self) -> float:
        return self.seconds / self.pages if self.pages else 0.0

    @property
    def extract_seconds_per_page(self) -> float:
        return self.extract_seconds / self.pages if self.pages else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "fields": list(self.fields),
            "documents": self.documents,
            "pages": self.pages,
            "failed": len(self.errors),
            "scores": {name: score.to_dict() for name, score in self.scores.items()},
            "reliability": [b.to_dict() for b in self.reliability],
            "seconds": round(self.seconds, 3),
            "extract_seconds": round(self.extract_seconds, 3),
            "seconds_per_page": round(self.seconds_per_page, 4),
            "extract_seconds_per_page": round(self.extract_seconds_per_page, 4),
            "errors": list(self.errors),
        }


def evaluate(
    extractor: Extractor,
    examples: Iterable[LabelledExample],
    fields: Sequence[str] | None = None,
    *,
    ocr_cache: str | Path | OCRCacheStore | None = None,
    batch_documents: int = 16,
) -> EvaluationReport:
    """Extract every example and score it against its labels.

    `fields` (default: the extractor's) are the fields scored; they must be among the ones the
    extractor asks for. Documents are read and extracted `batch_documents` at a time.
    """
    fields = list(fields or extractor.fields)
    unknown = [name for name in fields if name not in extractor.fields]
    if unknown:
        raise ValueError(f"fields {unknown} are not extracted by this model ({extractor.fields})")
    cache = FolderOCRCache(ocr_cache) if isinstance(ocr_cache, str | Path) else ocr_cache
    reader = DocumentReader(cache)
    started = time.perf_counter()
    extract_seconds = 0.0
    labels: list[dict[str, str]] = []
    predictions: list[dict[str, str]] = []
    confidences: list[float] = []
    correct: list[bool] = []
    errors: list[dict[str, str]] = []
    pages = 0

    iterator = iter(examples)
    while chunk := list(islice(iterator, max(1, batch_documents))):
        documents: list[Document | None] = []
        for example in chunk:
            try:
                documents.append(load_example(example, reader))
            except Exception as error:  # noqa: BLE001 - counted as an empty prediction
                documents.append(None)
                errors.append({"name": example.name, **_error_dict(error)})
        readable = [d for d in documents if d is not None]
        tick = time.perf_counter()
        results = extractor.extract_each(readable)
        extract_seconds += time.perf_counter() - tick
        by_document = dict(zip(map(id, readable), results, strict=True))

        for example, document in zip(chunk, documents, strict=True):
            labels.append(dict(example.fields))
            result = by_document.get(id(document)) if document is not None else None
            if isinstance(result, BaseException):
                errors.append({"name": example.name, **_error_dict(result)})
                result = None
            if document is not None:
                pages += len(document.pages)
            predicted = {}
            if result is not None:
                predicted = {name: f.value for name, f in result.fields.items() if name in fields}
                for name, extracted in result.fields.items():
                    if name in fields and extracted.value:
                        confidences.append(extracted.confidence)
                        gold = normalize_value(example.fields.get(name))
                        correct.append(normalize_value(extracted.value) == gold)
            predictions.append(predicted)

    return EvaluationReport(
        model=extractor.name,
        fields=fields,
        documents=len(labels),
        pages=pages,
        scores=score_fields(predictions, labels, fields),
        reliability=reliability_table(confidences, correct),
        seconds=time.perf_counter() - started,
        extract_seconds=extract_seconds,
        errors=errors,
        predictions=predictions,
    )


def _error_dict(error: BaseException) -> dict[str, str]:
    code, message = describe_error(error)
    return {"code": code, "message": message}


# --- command line -----------------------------------------------------------------------------


def print_report(report: EvaluationReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    scores = Table(title=f"{report.model}: {report.documents} documents, {report.pages} pages")
    for column in ("field", "support", "precision", "recall", "F1 exact", "F1 any case", "ANLS"):
        scores.add_column(column, justify="left" if column == "field" else "right")
    for name, score in report.scores.items():
        scores.add_row(
            name,
            str(score.support),
            f"{score.precision:.3f}",
            f"{score.recall:.3f}",
            f"{score.f1:.3f}",
            f"{score.f1_case_insensitive:.3f}",
            f"{score.anls:.3f}",
            style="bold" if name == "overall" else None,
            end_section=name == list(report.scores)[-2] if len(report.scores) > 1 else False,
        )
    console.print(scores)

    reliability = Table(title="confidence vs. correctness (non-empty predictions)")
    for column in ("confidence", "answers", "correct", "accuracy"):
        reliability.add_column(column, justify="right")
    for bucket in report.reliability:
        reliability.add_row(
            f"{bucket.low:.2f}-{bucket.high:.2f}",
            str(bucket.count),
            str(bucket.correct),
            f"{bucket.accuracy:.3f}" if bucket.count else "-",
        )
    console.print(reliability)
    console.print(
        f"{report.seconds:.1f} s in all ({report.seconds_per_page:.3f} s/page), "
        f"extraction {report.extract_seconds:.1f} s ({report.extract_seconds_per_page:.3f} s/page)"
    )
    for error in report.errors:
        console.print(f"[red]failed[/red] {error['name']}: {error['code']}: {error['message']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="docformer eval",
        description="Precision, recall, F1 and ANLS of a model on a labelled folder.",
    )
    parser.add_argument("--data", type=Path, required=True, help="labelled folder")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: shipped)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--limit", type=int, default=None, help="only the first N documents")
    parser.add_argument("--ocr-cache", type=Path, default=None, help="folder to keep OCR results")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--fields", action="append", help="comma-separated fields (default: the model's)"
    )
    parser.add_argument("--val-split", type=float, default=None,
                        help="only the validation part `docformer finetune --val-split` holds out")  # fmt: skip
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    args = parser.parse_args(argv)

    from docformer.labelled import LabelledFolderError

    try:
        extractor = Extractor.from_pretrained(
            args.model,
            device=args.device,
            fields=parse_fields(args.fields),
            max_batch_tokens=args.max_batch_tokens,
            max_new_tokens=args.max_new_tokens,
        )
    except (OSError, ValueError) as error:
        print(f"docformer eval: cannot load the model: {error}", file=sys.stderr)
        return 2
    try:
        examples = iter_labelled_folder(args.data)
        if args.val_split is not None:
            examples = split_examples(list(examples), args.val_split)[1]
        if args.limit is not None:
            examples = islice(examples, args.limit)
        report = evaluate(extractor, examples, ocr_cache=args.ocr_cache)
    except LabelledFolderError as error:
        print(f"docformer eval: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report)
    return 0


__all__ = ["EvaluationReport", "evaluate", "load_example", "main", "print_report"]
