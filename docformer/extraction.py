"""Field extraction: documents whose pages carry an image and OCR words -> key fields, each with
its confidence, the page and box it was read from, and its typed value (number, date, currency).

    extractor = load_extractor()                     # the shipped checkpoint, once per process
    for result in extractor.extract(documents):      # docformer.document.Document, OCR done
        print(result.fields["total"].value_num, result.fields["total"].box)

How one batch of documents is read:

1. Every page with OCR words is cut into windows of whole words (`DocFormerV2Processor`'s
   window logic: OCR tokens + the prompt fit the encoder's text budget, neighbours overlap), each
   window asking for every field at once (`docformer.generation.build_prompt`).
2. The windows of *all* pages of *all* documents are sorted by length and cut into batches whose
   padded size (rows x longest row, visual tokens included) stays within `max_batch_tokens`: rows
   of similar length waste little on padding, and a batch of short receipts can hold many rows
   while a batch of full pages holds few. One greedy generation per batch answers all fields of
   all its windows (`generate_answers`), held to the answer format with every value a piece of
   its window's text (`docformer.generation.PageSpanConstraint`); results go back to their windows
   by index.
3. Per document and field, the answer kept is the most confident non-empty one among all its
   windows and pages (`merge_window_answers`' policy, extended across pages): a field is usually
   printed once, so the window that sees it answers with confidence and the others answer empty
   or unsure. A field every window answered empty is absent from the result.
4. The kept answer is grounded on the OCR words of its page (`ground_answer`), then normalised
   (`docformer.normalization`).

Beside this file: `extraction_results.py` (what `extract` returns), `extraction_batching.py`
(windows, length batches, the answer kept per field) and `extraction_cli.py` (`docformer
extract`). Nothing here knows about storage, flows or databases; `ExtractedField.to_record` is
the shape the database layer stores.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from docformer.answer_thresholds import drop_unsure, thresholds_from_config
from docformer.checkpoints import DEFAULT_MODEL_NAME, check_model_dir, default_model_dir
from docformer.document import Document, OCRResult
from docformer.extraction_batching import PageInput, Window, length_batches, merge_answers
from docformer.extraction_results import DocumentExtraction, ExtractedField
from docformer.generation import (
    DEFAULT_FIELDS,
    FieldAnswer,
    PageSpanConstraint,
    build_prompt,
    parse_generation,
)
from docformer.grounding import Grounding, ground_answer, union_box
from docformer.models.docformerv2 import (
    DocFormerV2Config,
    DocFormerV2ForConditionalGeneration,
    DocFormerV2ForTokenClassification,
    DocFormerV2Processor,
)
from docformer.normalization import is_amount_field, normalize_currency, normalize_field
from docformer.tagging import (
    TaggedSpan,
    TagWindow,
    WordTagMerger,
    decode_spans,
    span_text,
    span_value,
    tag_windows,
)
from docformer.value_style import ValueStyle, styles_from_config

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _read_model_info(model_dir: Path) -> dict[str, Any]:
    path = model_dir / METRICS_FILE
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        logger.warning("%s: unreadable (%s); using defaults", path, error)
        return {}
    return info if isinstance(info, dict) else {}


# --- the engine -------------------------------------------------------------------------------


def load_model(
    model_dir: str | Path,
) -> DocFormerV2ForConditionalGeneration | DocFormerV2ForTokenClassification:
    """The checkpoint's extraction head: the tagger when its config names a tagging schema,
    else the generator."""
    config = DocFormerV2Config.from_pretrained(model_dir)
    if config.tagging_fields:
        return DocFormerV2ForTokenClassification.from_pretrained(model_dir)
    return DocFormerV2ForConditionalGeneration.from_pretrained(model_dir)


class Extractor:
    """A DocFormerv2 checkpoint ready to extract fields; one per process is enough
    (`load_extractor`), and `extract` may be called from several threads."""

    def __init__(
        self,
        model: DocFormerV2ForConditionalGeneration | DocFormerV2ForTokenClassification,
        processor: DocFormerV2Processor,
        *,
        name: str,
        fields: Sequence[str] | None = None,
        max_batch_tokens: int = 16384,
        max_new_tokens: int | None = None,
    ):
        self.model = model.eval()
        self.processor = processor
        self.name = name
        # A tagging checkpoint reads the fields of its head, all at once; a generator answers
        # whichever fields the prompt names.
        self.tagging = isinstance(model, DocFormerV2ForTokenClassification)
        if self.tagging:
            schema = list(model.config.tagging_fields)
            self.fields = tuple(f for f in (fields or schema) if f in schema)
        else:
            self.fields = tuple(fields or DEFAULT_FIELDS)
        self.value_styles: dict[str, ValueStyle] = styles_from_config(
            model.config.value_styles or {}
        )
        self.answer_thresholds = thresholds_from_config(model.config.answer_thresholds)
        self.prompt = build_prompt(self.fields)
        self.max_batch_tokens = int(max_batch_tokens)
        # Room for every field's name and a value as long as an address, plus the separators.
        self.max_new_tokens = int(max_new_tokens or 24 * len(self.fields) + 8)
        self.num_visual_tokens = model.config.num_visual_tokens

    @property
    def device(self) -> torch.device:
        return self.model.device

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path | None = None,
        *,
        device: str = "auto",
        fields: Sequence[str] | None = None,
        max_batch_tokens: int = 16384,
        max_new_tokens: int | None = None,
    ) -> Extractor:
        """Load a `save_pretrained` folder (model + processor); None is the shipped checkpoint.

        Fields default to the ones the checkpoint was trained on (`metrics.json` "fields"),
        else `DEFAULT_FIELDS`; the name to `metrics.json` "model_name" (or "name"), else the
        folder's name.
        """
        directory = check_model_dir(model_dir)
        info = _read_model_info(directory)
        model = load_model(directory)
        model.to(resolve_device(device))
        processor = DocFormerV2Processor.from_pretrained(directory)
        name = info.get("model_name") or info.get("name")
        if not name:
            name = DEFAULT_MODEL_NAME if directory == default_model_dir() else directory.name
        trained_fields = info.get("fields")
        if not (
            isinstance(trained_fields, list) and all(isinstance(f, str) for f in trained_fields)
        ):
            trained_fields = None
        trained_budget = info.get("max_new_tokens")
        return cls(
            model,
            processor,
            name=str(name),
            fields=fields or trained_fields,
            max_batch_tokens=max_batch_tokens,
            max_new_tokens=max_new_tokens
            or (trained_budget if isinstance(trained_budget, int) else None),
        )

    # --- public API -------------------------------------------------------------------------
    def extract(self, documents: Sequence[Document]) -> list[DocumentExtraction]:
        """Fields of each document, in input order. Pages must already carry their OCR result
        (`docformer.ocr.ocr_document`); pages without OCR words are skipped."""
        started = time.perf_counter()
        units = [
            [(page.index, page.image, page.ocr) for page in doc.pages if page.ocr is not None]
            for doc in documents
        ]
        fields, windows_per_unit = self._extract_units(units)
        elapsed = time.perf_counter() - started
        total_windows = max(1, sum(windows_per_unit))
        return [
            DocumentExtraction(
                source=doc.source,
                sha256=doc.sha256,
                pages=len(doc.pages),
                fields=doc_fields,
                model=self.name,
                seconds=elapsed * n_windows / total_windows,
            )
            for doc, doc_fields, n_windows in zip(documents, fields, windows_per_unit, strict=True)
        ]

    def extract_each(
        self, documents: Sequence[Document]
    ) -> list[DocumentExtraction | BaseException]:
        """`extract`, but a document the model fails on gives its error in its place instead of
        failing the others: all at once (fast), and when that raises, one by one to find
        which document it was."""
        if not documents:
            return []
        try:
            return list(self.extract(documents))
        except Exception as error:  # noqa: BLE001 - isolated below
            if len(documents) == 1:
                return [error]
            logger.warning("batch extraction failed; retrying document by document", exc_info=True)
        results: list[DocumentExtraction | BaseException] = []
        for document in documents:
            try:
                results.extend(self.extract([document]))
            except Exception as error:  # noqa: BLE001 - this document's own failure
                results.append(error)
        return results

    def extract_pages(
        self, pages: Sequence[tuple[Image.Image | None, OCRResult]]
    ) -> list[dict[str, ExtractedField]]:
        """Fields of each page on its own (no merging across pages); `page` is 0 when grounded."""
        fields, _ = self._extract_units([[(0, image, ocr)] for image, ocr in pages])
        return fields

    def extract_units(
        self, units: Sequence[Sequence[PageInput]]
    ) -> list[dict[str, ExtractedField]]:
        """Fields of each unit, a unit being one document's pages as (page index, image, OCR)
        (fine-tuning validates through this, on pages it holds in memory)."""
        return self._extract_units(units)[0]

    # --- internals --------------------------------------------------------------------------
    def _extract_units(
        self, units: Sequence[Sequence[PageInput]]
    ) -> tuple[list[dict[str, ExtractedField]], list[int]]:
        if self.tagging:
            results, windows = self._tag_units(units)
        else:
            results, windows = self._generate_units(units)
        windows_per_unit = [0] * len(units)
        for window in windows:
            windows_per_unit[window.unit] += 1
        return results, windows_per_unit

    def _generate_units(
        self, units: Sequence[Sequence[PageInput]]
    ) -> tuple[list[dict[str, ExtractedField]], list[Window]]:
        """One generation per window answers every field; per unit and field the most
        confident non-empty answer among its windows is kept."""
        windows = self.plan_windows(units)
        answers = self.answer_windows(units, windows)
        best = merge_answers(answers, [w.unit for w in windows], len(units))
        results = []
        for pages, unit_best in zip(units, best, strict=True):
            unit_fields = {
                name: self._field(unit_best[name][0], pages, windows[unit_best[name][1]])
                for name in self.fields
                if name in unit_best
            }
            self._drop_unsure(unit_fields)
            self._settle_currency(unit_fields)
            results.append(unit_fields)
        return results, windows

    def _batch_inputs(
        self, units: Sequence[Sequence[PageInput]], windows: Sequence[Window]
    ) -> dict[str, torch.Tensor]:
        """The padded encoder batch of `windows`, on the model's device."""
        # Each page image is resized once per batch, however many of its windows are in it.
        page_keys = list(dict.fromkeys((w.unit, w.page) for w in windows))
        pixels = self.processor.pixel_values([units[unit][page][1] for unit, page in page_keys])
        position = {key: i for i, key in enumerate(page_keys)}
        pixel_values = pixels[[position[(w.unit, w.page)] for w in windows]]
        batch = self.processor.pad([w.row for w in windows], pixel_values)
        return {key: value.to(self.device) for key, value in batch.items()}

    # --- the tagging head ------------------------------------------------------------------
    @torch.inference_mode()
    def _tag_units(
        self, units: Sequence[Sequence[PageInput]]
    ) -> tuple[list[dict[str, ExtractedField]], list[Window]]:
        """Every word of every page tagged in length-sorted batches (`docformer.tagging`); per
        unit and field the most confident span among all its pages is the answer."""
        windows: list[Window] = []
        tagged: list[TagWindow] = []
        mergers: dict[tuple[int, int], WordTagMerger] = {}
        n_tags = len(self.model.config.tag_names)
        for unit_index, pages in enumerate(units):
            for page_position, (_, _, ocr) in enumerate(pages):
                for tag_window in tag_windows(self.processor, ocr):
                    words = [word for _, word in tag_window.first_tokens]
                    windows.append(
                        Window(
                            unit_index,
                            page_position,
                            tag_window.row,
                            (min(words), max(words) + 1) if words else (0, 0),
                            self.num_visual_tokens + len(tag_window.row.input_ids),
                        )
                    )
                    tagged.append(tag_window)
                    mergers.setdefault(
                        (unit_index, page_position), WordTagMerger(len(ocr.words), n_tags)
                    )
        for batch_indices in length_batches([w.length for w in windows], self.max_batch_tokens):
            batch = self._batch_inputs(units, [windows[i] for i in batch_indices])
            probs = self.model(**batch).logits.float().softmax(-1).cpu().numpy()
            for row, index in enumerate(batch_indices):
                window = windows[index]
                mergers[(window.unit, window.page)].add(tagged[index], probs[row])

        results: list[dict[str, ExtractedField]] = [{} for _ in units]
        schema = self.model.config.tagging_fields
        for (unit, page_position), merger in mergers.items():
            page_index, _, ocr = units[unit][page_position]
            for name, best in decode_spans(merger.probs, schema, ocr).items():
                if name not in self.fields:
                    continue
                current = results[unit].get(name)
                if current is None or best.confidence > current.confidence:
                    results[unit][name] = self._tagged_field(best, page_index, ocr)
        for unit_fields in results:
            self._drop_unsure(unit_fields)
            self._settle_currency(unit_fields)
        return [
            {name: unit_fields[name] for name in self.fields if name in unit_fields}
            for unit_fields in results
        ], windows

    def _tagged_field(self, span: TaggedSpan, page_index: int, ocr: OCRResult) -> ExtractedField:
        printed = span_value(span.field, span_text(ocr, span))
        style = self.value_styles.get(span.field)
        value = style.apply(printed) if style is not None else printed
        typed = normalize_field(span.field, printed)
        words = list(span.word_indices)
        return ExtractedField(
            name=span.field,
            value=value,
            confidence=span.confidence,
            value_num=typed.value_num,
            value_date=typed.value_date,
            currency=typed.currency,
            page=page_index,
            box=union_box([ocr.words[i].box for i in words]),
            word_indices=words,
            raw_value=printed if value != printed else None,
        )

    def plan_windows(self, units: Sequence[Sequence[PageInput]]) -> list[Window]:
        """Every page of every unit (a document, or a page on its own) cut into encoder rows."""
        processor = self.processor
        prompt_ids = processor.tokenize_prompt(self.prompt)
        budget = processor.ocr_budget(prompt_ids)
        windows = []
        for unit_index, pages in enumerate(units):
            for page_position, (_, _, ocr) in enumerate(pages):
                if not ocr.words:
                    continue  # nothing to read, nothing to ground: not worth a generation
                tokens = processor.tokenize_page(ocr)
                for start, end in processor.window_spans(tokens, budget):
                    piece = tokens.slice(start, end)
                    row = processor.build_row(piece, prompt_ids)
                    word_range = (
                        (min(piece.word_ids), max(piece.word_ids) + 1) if piece.word_ids else (0, 0)
                    )
                    windows.append(
                        Window(
                            unit_index,
                            page_position,
                            row,
                            word_range,
                            self.num_visual_tokens + len(row.input_ids),
                        )
                    )
        return windows

    @torch.inference_mode()
    def answer_windows(
        self, units: Sequence[Sequence[PageInput]], windows: Sequence[Window]
    ) -> list[dict[str, FieldAnswer]]:
        """Every field's answer in every window, in the order of `windows`, generated in
        length-sorted batches of at most `max_batch_tokens` padded positions."""
        tokenizer = self.processor.tokenizer
        answers: list[dict[str, FieldAnswer] | None] = [None] * len(windows)
        for batch_indices in length_batches([w.length for w in windows], self.max_batch_tokens):
            batch = self._batch_inputs(units, [windows[i] for i in batch_indices])
            constraint = PageSpanConstraint.for_batch(tokenizer, self.fields, batch)
            generation = self.model.generate_answers(
                **batch, max_new_tokens=self.max_new_tokens, constraint=constraint
            )
            sequences = generation.sequences.tolist()
            probs = generation.token_probs.float().tolist()
            for row, window_index in enumerate(batch_indices):
                answers[window_index] = parse_generation(
                    sequences[row], probs[row], tokenizer, self.fields
                )
        return answers  # type: ignore[return-value]  # every window is in exactly one batch

    def _field(
        self,
        answer: FieldAnswer,
        pages: Sequence[PageInput],
        window: Window,
    ) -> ExtractedField:
        page_index, _, ocr = pages[window.page]
        # The words the window saw first (that is where the model read it), then the whole page.
        grounding = ground_answer(answer.value, ocr, window.word_range) or ground_answer(
            answer.value, ocr
        )
        typed = normalize_field(answer.name, answer.value)
        return ExtractedField(
            name=answer.name,
            value=answer.value,
            confidence=answer.confidence,
            value_num=typed.value_num,
            value_date=typed.value_date,
            currency=typed.currency,
            page=page_index if grounding else None,
            box=grounding.box if grounding else None,
            word_indices=grounding.word_indices if grounding else [],
        )

    def _drop_unsure(self, fields: dict[str, ExtractedField]) -> None:
        """Leave out the answers below their field's learned threshold (`answer_thresholds`)."""
        drop_unsure(fields, self.answer_thresholds)

    @staticmethod
    def _settle_currency(fields: dict[str, ExtractedField]) -> None:
        """One currency for the document's amounts: an explicit `currency` answer wins, else the
        mark printed with the amount itself, else the one printed with the total."""
        explicit = normalize_currency(fields["currency"].value) if "currency" in fields else None
        total = fields.get("total")
        fallback = total.currency if total is not None else None
        for name, extracted in fields.items():
            if name == "currency":
                extracted.currency = explicit
            elif is_amount_field(name):
                extracted.currency = explicit or extracted.currency or fallback


_cache: dict[tuple[str, str], Extractor] = {}
_cache_lock = threading.Lock()


def load_extractor(model_dir: str | Path | None = None, device: str = "auto") -> Extractor:
    """The process's extractor for (folder, device), loaded on first use: a worker process
    keeps one model in memory however many tasks it runs."""
    key = (str(check_model_dir(model_dir)), str(resolve_device(device)))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = Extractor.from_pretrained(key[0], device=key[1])
        return _cache[key]


def describe_error(error: BaseException) -> tuple[str, str]:
    """(code, message) for an error object (`docformer.extraction_cli.error_object`)."""
    from docformer.io import DocumentError

    if isinstance(error, DocumentError):
        return error.code, error.message
    if isinstance(error, FileNotFoundError):
        return "not_found", f"no such file: {error.filename}"
    if isinstance(error, OSError):
        return "io_error", str(error)
    return "extraction_error", f"{type(error).__name__}: {error}"


__all__ = [
    "Extractor",
    "Grounding",
    "describe_error",
    "ground_answer",
    "load_extractor",
    "load_model",
    "resolve_device",
    "union_box",
]
