"""Extractions: what a model version read from a document, stored in bulk (the extraction
rows, their fields by COPY, the documents' pages), and the document marked 'extracted'; for a
run, only the documents its job still holds (`store_claimed_extractions`)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.jobs import hold_claims
from db.models import Field, ReviewStatus

FIELD_KEYS = frozenset(
    {
        "name",
        "value",
        "raw_value",
        "value_num",
        "value_date",
        "currency",
        "confidence",
        "page",
        "box",
        "review_status",
    }
)


@dataclass
class ExtractionRecord:
    """What one model version extracted from one document, for `store_extractions`.

    fields: dicts with `name` and `value` (the text as the model gives it), and optionally
    raw_value (the text as printed, when a learned value style changed `value`; None or equal
    to value is stored as NULL), value_num (Decimal, int, float or numeric string), value_date
    (date or ISO string), currency, confidence, page, box ([x0, y0, x1, y1] in page pixels, or
    None) and review_status.
    pages: dicts with page_index, width, height, and optionally has_text_layer, ocr_engine,
    word_count, text and heading_text (the page's OCR text and its heading lines, what full-text
    search reads); when given they are upserted and the document's page_count set to their
    number.
    """

    document_id: int
    model_version_id: int
    job_id: int | None
    fields: list[Mapping[str, Any]]
    pages: list[Mapping[str, Any]] | None = None


def _check_field_keys(item: Mapping[str, Any]) -> None:
    if not item.keys() <= FIELD_KEYS:
        unknown = sorted(item.keys() - FIELD_KEYS)
        raise ValueError(f"unknown field keys {unknown}; allowed: {sorted(FIELD_KEYS)}")
    if "name" not in item or "value" not in item:
        raise ValueError(f"a field needs 'name' and 'value', got {sorted(item.keys())}")


def _box(item: Mapping[str, Any]) -> list[int] | None:
    box = item.get("box")
    if box is None:
        return None
    if len(box) != 4:
        raise ValueError(f"a box is [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = box
    return [round(x0), round(y0), round(x1), round(y1)]


def _raw_value(value: Any) -> str:
    # PostgreSQL text cannot hold NUL; everything else is kept verbatim.
    return "" if value is None else str(value).replace("\x00", "")


def _printed_value(item: Mapping[str, Any], value: str) -> str | None:
    """The field's raw_value as stored: NULL unless it differs from the stored `value`, so rows
    no value style changed cost nothing and "NULL = same as value" holds for every row."""
    raw = item.get("raw_value")
    if raw is None:
        return None
    raw = _raw_value(raw)
    return None if raw == value else raw


def _field_row(extraction_id: int, item: Mapping[str, Any]) -> dict[str, Any]:
    """One field as a row dict for `fields` (the portable, non-COPY path)."""
    _check_field_keys(item)
    box = _box(item) or [None] * 4
    value_num = item.get("value_num")
    value = _raw_value(item["value"])
    return {
        "extraction_id": extraction_id,
        "name": item["name"],
        "value": value,
        "raw_value": _printed_value(item, value),
        "value_num": None if value_num is None else Decimal(str(value_num)),
        "value_date": item.get("value_date"),
        "currency": item.get("currency"),
        "confidence": item.get("confidence"),
        "page": item.get("page"),
        "box_x0": box[0],
        "box_y0": box[1],
        "box_x1": box[2],
        "box_y1": box[3],
        "review_status": ReviewStatus(item.get("review_status") or ReviewStatus.UNREVIEWED),
    }


# COPY's text format: tab-separated, \N for NULL, and these four characters escaped.
COPY_COLUMNS = (
    "extraction_id, name, value, raw_value, value_num, value_date, currency, confidence, page, "
    "box_x0, box_y0, box_x1, box_y1, review_status"
)
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": ""})
COPY_NULL = "\\N"
COPY_NULL_BOX = "\t".join([COPY_NULL] * 4)


def _copy_text(value: Any) -> str:
    return COPY_NULL if value is None else str(value).translate(COPY_ESCAPES)


def _copy_line(extraction_id: int, item: Mapping[str, Any]) -> str:
    """One field as a line of COPY text. Values are parsed by PostgreSQL itself: value_num
    must be a number or a numeric string ("1234.50"), value_date a date or ISO string."""
    _check_field_keys(item)
    get = item.get
    box = _box(item)
    value = _raw_value(item["value"])
    value_num = get("value_num")
    value_date = get("value_date")
    confidence = get("confidence")
    page = get("page")
    review = get("review_status")
    confidence_text = COPY_NULL if confidence is None else repr(float(confidence))
    box_text = COPY_NULL_BOX if box is None else "\t".join(map(str, box))
    return (
        f"{extraction_id}\t{_copy_text(item['name'])}\t{_copy_text(value)}"
        f"\t{_copy_text(_printed_value(item, value))}"
        f"\t{_copy_text(value_num)}\t{_copy_text(value_date)}\t{_copy_text(get('currency'))}"
        f"\t{confidence_text}"
        f"\t{COPY_NULL if page is None else int(page)}"
        f"\t{box_text}"
        f"\t{ReviewStatus(review).value if review else 'unreviewed'}"
    )


def _insert_fields(session: Session, lines_or_rows: list[Any], use_copy: bool) -> None:
    if not lines_or_rows:
        return
    if use_copy:
        cursor = session.connection().connection.driver_connection.cursor()
        try:
            cursor.copy_expert(
                f"COPY fields ({COPY_COLUMNS}) FROM STDIN",
                io.StringIO("\n".join(lines_or_rows) + "\n"),
            )
        finally:
            cursor.close()
    else:
        # SQLAlchemy turns a Core executemany into multi-row INSERT ... VALUES batches.
        session.execute(Field.__table__.insert(), lines_or_rows)


def _can_copy(session: Session) -> bool:
    """COPY needs psycopg2's copy_expert; any other driver takes the executemany path."""
    return session.connection().dialect.driver == "psycopg2"


def _page_text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL, which a text layer can carry; None stays NULL (not read).
    return None if value is None else value.replace("\x00", "")


PAGE_COLUMNS = (
    "document_id",
    "page_index",
    "width",
    "height",
    "has_text_layer",
    "ocr_engine",
    "word_count",
    "text",
    "heading_text",
)
# The keys a page row may hold: every column but the document it belongs to.
PAGE_KEYS = frozenset(PAGE_COLUMNS) - {"document_id"}
# Fixed SQL over arrays, like the extraction statements below: a multi-row VALUES built per
# call costs more to compile in Python than PostgreSQL spends running it.
UPSERT_PAGES = text(
    """
    INSERT INTO pages (document_id, page_index, width, height, has_text_layer, ocr_engine,
                       word_count, text, heading_text)
    SELECT * FROM unnest(
        CAST(:document_id AS bigint[]), CAST(:page_index AS integer[]),
        CAST(:width AS integer[]), CAST(:height AS integer[]),
        CAST(:has_text_layer AS boolean[]), CAST(:ocr_engine AS text[]),
        CAST(:word_count AS integer[]), CAST(:text AS text[]), CAST(:heading_text AS text[])
    )
    ON CONFLICT (document_id, page_index) DO UPDATE
    SET width = excluded.width, height = excluded.height,
        has_text_layer = excluded.has_text_layer, ocr_engine = excluded.ocr_engine,
        word_count = excluded.word_count, text = excluded.text,
        heading_text = excluded.heading_text
    """
)
SET_PAGE_COUNTS = text(
    """
    UPDATE documents AS d
    SET page_count = counts.page_count, updated_at = now()
    FROM unnest(CAST(:document_ids AS bigint[]), CAST(:page_counts AS integer[]))
        AS counts(document_id, page_count)
    WHERE d.id = counts.document_id
    """
)


def store_pages_of_documents(
    session: Session, pages_by_document: Mapping[int, Sequence[Mapping[str, Any]]]
) -> None:
    """Upsert many documents' pages by (document, page_index) and set their page_count: two
    statements whatever the number of documents (per-document statements cost a round trip
    each, which dominated storing a run's results)."""
    rows = []
    page_counts = {}
    for document_id, pages in pages_by_document.items():
        if not pages:
            continue
        page_counts[document_id] = len(pages)
        for item in pages:
            unknown = item.keys() - PAGE_KEYS
            if unknown:
                raise ValueError(
                    f"unknown page keys {sorted(unknown)}; allowed: {sorted(PAGE_KEYS)}"
                )
            rows.append(
                {
                    "document_id": document_id,
                    "page_index": item["page_index"],
                    "width": item["width"],
                    "height": item["height"],
                    "has_text_layer": bool(item.get("has_text_layer", False)),
                    "ocr_engine": item.get("ocr_engine"),
                    "word_count": item.get("word_count", 0),
                    "text": _page_text(item.get("text")),
                    "heading_text": _page_text(item.get("heading_text")),
                }
            )
    if not rows:
        return
    # One upsert cannot touch a row twice: a later entry for the same page wins.
    rows = list({(row["document_id"], row["page_index"]): row for row in rows}.values())
    session.execute(
        UPSERT_PAGES, {column: [row[column] for row in rows] for column in PAGE_COLUMNS}
    )
    session.execute(
        SET_PAGE_COUNTS,
        {"document_ids": list(page_counts), "page_counts": list(page_counts.values())},
    )


# The hot path of a run is written as fixed SQL over arrays (unnest / ANY): one statement shape
# whatever the batch size, so nothing is rebuilt or recompiled per call.
UPSERT_EXTRACTIONS = text(
    """
    INSERT INTO extractions (document_id, model_version_id, job_id, field_count)
    SELECT * FROM unnest(
        CAST(:document_ids AS bigint[]), CAST(:model_version_ids AS bigint[]),
        CAST(:job_ids AS bigint[]), CAST(:field_counts AS integer[])
    )
    ON CONFLICT (document_id, model_version_id) DO UPDATE
    SET job_id = excluded.job_id, field_count = excluded.field_count, created_at = now()
    RETURNING id, document_id, model_version_id
    """
)
DELETE_FIELDS = text(
    "DELETE FROM fields WHERE extraction_id = ANY(CAST(:extraction_ids AS bigint[]))"
)
MARK_EXTRACTED = text(
    """
    UPDATE documents
    SET status = 'extracted', last_error = NULL, claimed_by_job_id = NULL,
        claim_expires_at = NULL, updated_at = now()
    WHERE id = ANY(CAST(:document_ids AS bigint[]))
    """
)


def store_extractions(session: Session, records: Sequence[ExtractionRecord]) -> list[int]:
    """Store many documents' extractions at once; returns extraction ids in input order.

    Per (document, model version) there is one extraction: storing again replaces its fields
    and moves its created_at and job_id to this run. Each document becomes 'extracted' with
    its claim and last error cleared. Six statements whatever the number of records (upsert
    the extractions, delete the fields they replace, COPY the new fields, upsert the pages and
    their counts, mark the documents), which is what makes storing many small extractions fast.

    It checks no claim: a run stores its results with `store_claimed_extractions`.
    """
    if not records:
        return []
    # One upsert cannot touch a row twice: a later record for the same pair wins.
    latest = {(r.document_id, r.model_version_id): r for r in records}
    rows = session.execute(
        UPSERT_EXTRACTIONS,
        {
            "document_ids": [r.document_id for r in latest.values()],
            "model_version_ids": [r.model_version_id for r in latest.values()],
            "job_ids": [r.job_id for r in latest.values()],
            "field_counts": [len(r.fields) for r in latest.values()],
        },
    )
    ids = {(doc_id, version_id): ext_id for ext_id, doc_id, version_id in rows}
    session.execute(DELETE_FIELDS, {"extraction_ids": list(ids.values())})

    # COPY is the fast path (several times faster than INSERT for thousands of rows).
    use_copy = _can_copy(session)
    to_row = _copy_line if use_copy else _field_row
    field_rows = [
        to_row(ids[pair], item) for pair, record in latest.items() for item in record.fields
    ]
    _insert_fields(session, field_rows, use_copy)

    store_pages_of_documents(
        session, {record.document_id: record.pages for record in latest.values() if record.pages}
    )
    session.execute(MARK_EXTRACTED, {"document_ids": list({r.document_id for r in records})})
    return [ids[(r.document_id, r.model_version_id)] for r in records]


@dataclass
class ClaimedStore:
    """What `store_claimed_extractions` did: the documents it stored (and their extraction
    ids, in input order) and those it left alone because the job no longer holds them."""

    stored: list[int]
    lost: list[int]
    extraction_ids: list[int]


def store_claimed_extractions(
    session: Session, job_id: int, records: Sequence[ExtractionRecord]
) -> ClaimedStore:
    """Store the extractions of the documents `job_id` still holds (`store_extractions`), and
    nothing of the others: the write that finishes a run's documents.

    The held documents are locked first (`db.jobs.hold_claims`), so no other run can take
    them before this transaction ends, and marking them 'extracted' cannot overwrite a claim
    taken meanwhile. A lost claim (expired and taken by another run, or given back when this
    job was declared crashed) means another run may be working on the document or has
    finished it: storing this job's result as well would store and count it twice.
    """
    document_ids = sorted({r.document_id for r in records})
    held = set(hold_claims(session, job_id, document_ids))
    kept = [r for r in records if r.document_id in held]
    return ClaimedStore(
        stored=sorted(held),
        lost=[d for d in document_ids if d not in held],
        extraction_ids=store_extractions(session, kept) if kept else [],
    )


def store_extraction(
    session: Session,
    document_id: int,
    model_version_id: int,
    job_id: int | None,
    fields: list[Mapping[str, Any]],
    pages: list[Mapping[str, Any]] | None = None,
) -> int:
    """Store one document's extraction (see `store_extractions`); returns its id."""
    record = ExtractionRecord(document_id, model_version_id, job_id, fields, pages)
    return store_extractions(session, [record])[0]
