"""The few queries the flows need, each a function of an explicit `Session`.

Nothing here commits: every function runs inside the caller's transaction, so a caller can put
several calls into one unit of work and a failure rolls all of them back. Use
`db.session.session_scope(...)` (commit on success, rollback on error) or `session.commit()`.
A claim, in particular, only takes effect for other workers once its transaction commits.

Order of the calls in one digitize run:
    job_id = open_job(...)
    registered = register_documents(...)          # after discovery (skip known_objects first)
    mark_crashed_jobs(session, job_ids=abandoned_jobs(...))   # runs that were killed
    claimed = claim_documents(session, job_id, ...)
    store_extraction(...) | mark_document_failed(...) | release_claim(...)   # per document
    renew_claims(session, job_id, ttl)            # after each stored chunk: the run is alive
    close_job(session, job_id, "completed", ...)
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, aliased

from db.models import (
    ActivationKind,
    Document,
    DocumentSource,
    DocumentStatus,
    Field,
    Job,
    JobKind,
    JobStatus,
    Label,
    ModelActivation,
    ModelStatus,
    ModelVersion,
    ReviewStatus,
    TrainingKind,
    TrainingRun,
    TrainingStatus,
)

# Rows per multi-row INSERT ... VALUES statement: large enough that round trips do not
# dominate, small enough to stay well below PostgreSQL's 65535 bind parameters per statement.
ROWS_PER_STATEMENT = 1000

# Serialises activations across processes (any fixed 64-bit number, "model" in ASCII).
ACTIVATE_MODEL_LOCK_ID = 0x6D6F64656C


def _chunks(items: Sequence[Any], size: int = ROWS_PER_STATEMENT) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------------------------------
# documents: registration and discovery


@dataclass(frozen=True)
class DocumentObject:
    """An object in storage whose bytes were read and hashed: what registration needs."""

    bucket: str
    key: str
    sha256: str
    size: int
    media_type: str
    etag: str | None = None
    page_count: int | None = None


@dataclass(frozen=True)
class RegisteredDocument:
    """The document an object's content is. `is_new`: this call created the row (the content
    was never seen before); False for content already known, under any key."""

    id: int
    sha256: str
    bucket: str
    key: str
    is_new: bool


def register_documents(
    session: Session, items: Iterable[DocumentObject | Mapping[str, Any]]
) -> list[RegisteredDocument]:
    """Record objects and the documents their contents are; idempotent by sha256.

    Returns one entry per item, in input order. Content seen for the first time becomes a new
    `documents` row in status 'new' (is_new=True, only on the first item carrying that sha256).
    Known content keeps its row, status and results; its source is moved to this object when
    the object differs from the recorded one. Every object is also upserted into
    `document_sources`, which is what `known_objects` consults.
    """
    objects = [
        item if isinstance(item, DocumentObject) else DocumentObject(**item) for item in items
    ]
    if not objects:
        return []
    # The last object carrying a content is where that content was last registered from.
    last_by_sha = {obj.sha256: obj for obj in objects}

    # New contents: INSERT ... ON CONFLICT DO NOTHING returns only the rows it inserted.
    ids_by_sha: dict[str, int] = {}
    new_shas: set[str] = set()
    candidates = list(last_by_sha.values())
    for chunk in _chunks(candidates):
        statement = (
            pg_insert(Document)
            .values(
                [
                    {
                        "source_bucket": obj.bucket,
                        "source_key": obj.key,
                        "sha256": obj.sha256,
                        "etag": obj.etag,
                        "size": obj.size,
                        "media_type": obj.media_type,
                        "page_count": obj.page_count,
                    }
                    for obj in chunk
                ]
            )
            .on_conflict_do_nothing(index_elements=[Document.sha256])
            .returning(Document.id, Document.sha256)
        )
        for doc_id, sha in session.execute(statement):
            ids_by_sha[sha] = doc_id
            new_shas.add(sha)

    # Known contents: look up their ids, and move the source of those seen at a new place.
    known = [obj for sha, obj in last_by_sha.items() if sha not in new_shas]
    moved: list[dict[str, Any]] = []
    for chunk in _chunks(known):
        rows = session.execute(
            select(
                Document.id,
                Document.sha256,
                Document.source_bucket,
                Document.source_key,
                Document.etag,
            ).where(Document.sha256.in_([obj.sha256 for obj in chunk]))
        )
        for doc_id, sha, bucket, key, etag in rows:
            ids_by_sha[sha] = doc_id
            obj = last_by_sha[sha]
            if (bucket, key, etag) != (obj.bucket, obj.key, obj.etag):
                moved.append(
                    {
                        "doc_id": doc_id,
                        "to_bucket": obj.bucket,
                        "to_key": obj.key,
                        "to_etag": obj.etag,
                    }
                )
    if moved:
        table = Document.__table__
        session.execute(
            update(table)
            .where(table.c.id == bindparam("doc_id"))
            .values(
                source_bucket=bindparam("to_bucket"),
                source_key=bindparam("to_key"),
                etag=bindparam("to_etag"),
                updated_at=func.now(),
            ),
            moved,
        )

    # Every object location, last writer wins per (bucket, key).
    latest_by_location = {(obj.bucket, obj.key): obj for obj in objects}
    for chunk in _chunks(list(latest_by_location.values())):
        statement = pg_insert(DocumentSource).values(
            [
                {
                    "document_id": ids_by_sha[obj.sha256],
                    "bucket": obj.bucket,
                    "key": obj.key,
                    "etag": obj.etag,
                    "size": obj.size,
                }
                for obj in chunk
            ]
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[DocumentSource.bucket, DocumentSource.key],
                set_={
                    "document_id": statement.excluded.document_id,
                    "etag": statement.excluded.etag,
                    "size": statement.excluded.size,
                    "last_seen_at": func.now(),
                },
            )
        )

    result = []
    reported_new: set[str] = set()
    for obj in objects:
        is_new = obj.sha256 in new_shas and obj.sha256 not in reported_new
        if is_new:
            reported_new.add(obj.sha256)
        result.append(
            RegisteredDocument(ids_by_sha[obj.sha256], obj.sha256, obj.bucket, obj.key, is_new)
        )
    return result


def known_objects(
    session: Session, bucket: str, etags_by_key: Mapping[str, str | None]
) -> set[str]:
    """The keys of `bucket` already registered with the same etag: discovery skips them without
    reading their bytes. An object whose etag changed (overwritten) is not known; neither is
    one with no etag, since nothing proves it unchanged."""
    keys = [key for key, etag in etags_by_key.items() if etag is not None]
    known: set[str] = set()
    for chunk in _chunks(keys, 10 * ROWS_PER_STATEMENT):
        rows = session.execute(
            select(DocumentSource.key, DocumentSource.etag).where(
                DocumentSource.bucket == bucket, DocumentSource.key.in_(chunk)
            )
        )
        known.update(key for key, etag in rows if etag == etags_by_key[key])
    return known


def document_status_counts(session: Session) -> dict[str, int]:
    """How many documents are in each status (every status present, zero included)."""
    counts = dict.fromkeys((status.value for status in DocumentStatus), 0)
    for status, count in session.execute(
        select(Document.status, func.count()).group_by(Document.status)
    ):
        counts[DocumentStatus(status).value] = count
    return counts


# ---------------------------------------------------------------------------------------------
# jobs


def open_job(
    session: Session,
    kind: JobKind | str,
    flow_run_id: uuid.UUID | str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> int:
    """A new job in status 'running'; returns its id."""
    job = Job(
        kind=JobKind(kind),
        flow_run_id=uuid.UUID(str(flow_run_id)) if flow_run_id is not None else None,
        parameters=dict(parameters or {}),
        status=JobStatus.RUNNING,
    )
    session.add(job)
    session.flush()
    return job.id


def add_job_counts(
    session: Session,
    job_id: int,
    *,
    documents_seen: int = 0,
    documents_extracted: int = 0,
    documents_failed: int = 0,
    pages: int = 0,
) -> None:
    """Add to a job's counters; safe from concurrent tasks (each adds in place, x = x + n)."""
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            documents_seen=Job.documents_seen + documents_seen,
            documents_extracted=Job.documents_extracted + documents_extracted,
            documents_failed=Job.documents_failed + documents_failed,
            pages=Job.pages + pages,
        )
        .execution_options(synchronize_session=False)
    )


def close_job(
    session: Session,
    job_id: int,
    status: JobStatus | str,
    *,
    documents_seen: int | None = None,
    documents_extracted: int | None = None,
    documents_failed: int | None = None,
    pages: int | None = None,
    error: str | None = None,
) -> None:
    """Finish a job: set its final status, finish time, error and (given) counts.

    A finished job holds no claims: documents it still has claimed go back to 'queued'.
    """
    status = JobStatus(status)
    if status is JobStatus.RUNNING:
        raise ValueError("close_job needs a final status, not 'running'")
    values: dict[str, Any] = {"status": status, "finished_at": func.now(), "error": error}
    counts = {
        "documents_seen": documents_seen,
        "documents_extracted": documents_extracted,
        "documents_failed": documents_failed,
        "pages": pages,
    }
    values.update({name: count for name, count in counts.items() if count is not None})
    found = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(**values)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).first()
    if found is None:
        raise LookupError(f"no job {job_id}")
    _release_claims_of_jobs(session, [job_id], reason=None)


def mark_crashed_jobs(
    session: Session,
    *,
    job_ids: Iterable[int] | None = None,
    flow_run_ids: Iterable[uuid.UUID | str] | None = None,
    running_longer_than_seconds: float | None = None,
    error: str = "crashed",
) -> list[int]:
    """Mark running jobs crashed and put the documents they held back to 'queued'.

    Picks jobs still 'running' that match any of the given selectors: their ids, their Prefect
    flow-run ids (for runs Prefect reports as crashed), or a start older than a threshold.
    Claims would expire on their own after the TTL; this frees them at once. Returns the ids.
    """
    selectors = []
    if job_ids is not None:
        selectors.append(Job.id.in_(list(job_ids)))
    if flow_run_ids is not None:
        selectors.append(Job.flow_run_id.in_([uuid.UUID(str(f)) for f in flow_run_ids]))
    if running_longer_than_seconds is not None:
        cutoff = func.now() - dt.timedelta(seconds=running_longer_than_seconds)
        selectors.append(Job.started_at < cutoff)
    if not selectors:
        raise ValueError("give job_ids, flow_run_ids or running_longer_than_seconds")
    crashed = list(
        session.scalars(
            update(Job)
            .where(Job.status == JobStatus.RUNNING, or_(*selectors))
            .values(status=JobStatus.CRASHED, finished_at=func.now(), error=error)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
    )
    _release_claims_of_jobs(session, crashed, reason=f"job crashed: {error}")
    return sorted(crashed)


def abandoned_jobs(
    session: Session, kind: JobKind | str, ttl_seconds: float, *, exclude: Iterable[int] = ()
) -> list[int]:
    """Running jobs of `kind` that show no sign of life: the process behind them is gone.

    A live digitize job renews its claims each time a chunk is stored (`renew_claims`), so a
    job is abandoned when it still holds claims but every one of them has expired, or when it
    holds none and started more than `ttl_seconds` ago (killed before it claimed anything).
    Pass the ids to `mark_crashed_jobs`; nothing else marks a job whose process was killed.
    """
    cutoff = func.now() - dt.timedelta(seconds=ttl_seconds)
    held = (
        select(Document.id)
        .where(Document.claimed_by_job_id == Job.id, Document.status == DocumentStatus.PROCESSING)
        .correlate(Job)
    )
    live = held.where(Document.claim_expires_at > func.now())
    return sorted(
        session.scalars(
            select(Job.id).where(
                Job.status == JobStatus.RUNNING,
                Job.kind == JobKind(kind),
                Job.id.not_in(list(exclude)),
                ~live.exists(),
                or_(held.exists(), Job.started_at < cutoff),
            )
        )
    )


def renew_claims(session: Session, job_id: int, ttl_seconds: float) -> int:
    """The sign of life of a running job: the claims `job_id` holds that have less than half
    of `ttl_seconds` left now expire `ttl_seconds` from now. Returns how many were renewed.

    Renewing only claims past half their time keeps the cost flat: a run of any size rewrites
    its claims about twice per TTL, not after every chunk. Rows that another transaction holds
    (a chunk of this job being stored) are skipped, not waited for: waiting here, after that
    transaction's own updates wait on rows this one renewed, would be a deadlock.
    """
    renewable = (
        select(Document.id)
        .where(
            Document.claimed_by_job_id == job_id,
            Document.status == DocumentStatus.PROCESSING,
            Document.claim_expires_at < func.now() + dt.timedelta(seconds=ttl_seconds / 2),
        )
        .with_for_update(skip_locked=True)
        .cte("renewable")
    )
    result = session.execute(
        update(Document)
        .where(Document.id == renewable.c.id)
        .values(claim_expires_at=func.now() + dt.timedelta(seconds=ttl_seconds))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def _release_claims_of_jobs(session: Session, job_ids: list[int], reason: str | None) -> None:
    if not job_ids:
        return
    values: dict[str, Any] = _unclaimed(DocumentStatus.QUEUED)
    if reason is not None:
        values["last_error"] = reason
    session.execute(
        update(Document)
        .where(
            Document.claimed_by_job_id.in_(job_ids),
            Document.status == DocumentStatus.PROCESSING,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _unclaimed(status: DocumentStatus) -> dict[str, Any]:
    return {
        "status": status,
        "claimed_by_job_id": None,
        "claim_expires_at": None,
        "updated_at": func.now(),
    }


# ---------------------------------------------------------------------------------------------
# claiming work


@dataclass(frozen=True)
class ClaimedDocument:
    """A document this job now holds: everything needed to fetch and process it."""

    id: int
    bucket: str
    key: str
    sha256: str
    media_type: str
    size: int
    etag: str | None
    page_count: int | None


def claim_documents(
    session: Session,
    job_id: int,
    limit: int,
    ttl_seconds: float,
    document_ids: Iterable[int] | None = None,
    reprocess: bool = False,
) -> list[ClaimedDocument]:
    """Claim up to `limit` documents for `job_id`, oldest first; they become 'processing'.

    Claimable: documents in 'new' or 'queued' (also 'failed' and 'extracted' when `reprocess`),
    and documents whose claim has expired (its job crashed or stalled past `ttl_seconds`).
    `document_ids` restricts the claim to those documents (a triggered run).

    Rows are locked with FOR UPDATE SKIP LOCKED, so concurrent claimers pass over each other's
    rows instead of waiting, and never both get one document: a row another transaction
    claimed and committed meanwhile is re-checked after its lock and no longer qualifies.
    """
    if limit <= 0:
        return []
    statuses = [DocumentStatus.NEW, DocumentStatus.QUEUED, DocumentStatus.PROCESSING]
    if reprocess:
        statuses += [DocumentStatus.FAILED, DocumentStatus.EXTRACTED]
    # Only 'processing' rows carry a claim; for them an expired claim is what makes them
    # claimable. The other statuses have NULL claim columns.
    claim_free = or_(Document.claim_expires_at.is_(None), Document.claim_expires_at <= func.now())
    candidates = (
        select(Document.id)
        .where(Document.status.in_(statuses), claim_free)
        .order_by(Document.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if document_ids is not None:
        candidates = candidates.where(Document.id.in_(list(document_ids)))
    candidates = candidates.cte("candidates")
    rows = session.execute(
        update(Document)
        .where(Document.id == candidates.c.id)
        .values(
            status=DocumentStatus.PROCESSING,
            claimed_by_job_id=job_id,
            claim_expires_at=func.now() + dt.timedelta(seconds=ttl_seconds),
            updated_at=func.now(),
        )
        .returning(
            Document.id,
            Document.source_bucket,
            Document.source_key,
            Document.sha256,
            Document.media_type,
            Document.size,
            Document.etag,
            Document.page_count,
        )
        .execution_options(synchronize_session=False)
    )
    return sorted((ClaimedDocument(*row) for row in rows), key=lambda doc: doc.id)


def mark_document_failed(session: Session, document_id: int, job_id: int, reason: str) -> bool:
    """A permanent failure (unreadable file, no pages): 'failed' with the reason, claim cleared.

    Only the job holding the claim may do this; returns False (and changes nothing) when the
    claim is no longer this job's, e.g. it expired and another job took the document.
    """
    return _finish_claim(session, document_id, job_id, DocumentStatus.FAILED, reason)


def release_claim(
    session: Session, document_id: int, job_id: int, reason: str | None = None
) -> bool:
    """A transient failure (storage timeout, worker shutting down): back to 'queued', so the
    next run claims it again. Same ownership rule and return value as mark_document_failed."""
    return _finish_claim(session, document_id, job_id, DocumentStatus.QUEUED, reason)


def _finish_claim(
    session: Session, document_id: int, job_id: int, status: DocumentStatus, reason: str | None
) -> bool:
    values = _unclaimed(status)
    if reason is not None:
        values["last_error"] = reason
    found = session.execute(
        update(Document)
        .where(
            Document.id == document_id,
            Document.claimed_by_job_id == job_id,
            Document.status == DocumentStatus.PROCESSING,
        )
        .values(**values)
        .returning(Document.id)
        .execution_options(synchronize_session=False)
    ).first()
    return found is not None


# ---------------------------------------------------------------------------------------------
# extractions and fields

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
PAGE_KEYS = frozenset(
    {"page_index", "width", "height", "has_text_layer", "ocr_engine", "word_count"}
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
    word_count; when given they are upserted and the document's page_count set to their number.
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


PAGE_COLUMNS = (
    "document_id",
    "page_index",
    "width",
    "height",
    "has_text_layer",
    "ocr_engine",
    "word_count",
)
# Fixed SQL over arrays, like the extraction statements below: a multi-row VALUES built per
# call costs more to compile in Python than PostgreSQL spends running it.
UPSERT_PAGES = text(
    """
    INSERT INTO pages (document_id, page_index, width, height, has_text_layer, ocr_engine,
                       word_count)
    SELECT * FROM unnest(
        CAST(:document_id AS bigint[]), CAST(:page_index AS integer[]),
        CAST(:width AS integer[]), CAST(:height AS integer[]),
        CAST(:has_text_layer AS boolean[]), CAST(:ocr_engine AS text[]),
        CAST(:word_count AS integer[])
    )
    ON CONFLICT (document_id, page_index) DO UPDATE
    SET width = excluded.width, height = excluded.height,
        has_text_layer = excluded.has_text_layer, ocr_engine = excluded.ocr_engine,
        word_count = excluded.word_count
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


# ---------------------------------------------------------------------------------------------
# model versions


def register_model_version(
    session: Session,
    name: str,
    uri: str,
    parent_id: int | None = None,
    preset: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    status: ModelStatus | str = ModelStatus.CANDIDATE,
    activated_by: str = "docflow",
) -> int:
    """Record a trained model; returns its id. status='active' activates it at once (and
    retires the previously active one), recorded as done by `activated_by`."""
    status = ModelStatus(status)
    version = ModelVersion(
        name=name,
        uri=uri,
        parent_id=parent_id,
        preset=preset,
        metrics=dict(metrics or {}),
        status=ModelStatus.CANDIDATE if status is ModelStatus.ACTIVE else status,
    )
    session.add(version)
    session.flush()
    if status is ModelStatus.ACTIVE:
        activate_model_version(
            session, version.id, by=activated_by, reason="registered as the active version"
        )
    return version.id


def activate_model_version(
    session: Session,
    version_id: int,
    *,
    by: str = "docflow",
    kind: ActivationKind | str = ActivationKind.ACTIVATE,
    reason: str | None = None,
) -> int | None:
    """Make `version_id` the active model and retire the one active before, atomically, and
    record the change in `model_activations` (who: `by`; how: `kind`; why: `reason`).
    Returns the id of the version active before (None when there was none). Activating the
    version already active changes and records nothing.

    A transaction-scoped advisory lock serialises activations: two promotions at once run one
    after the other instead of one failing on the one-active index.
    """
    session.execute(select(func.pg_advisory_xact_lock(ACTIVATE_MODEL_LOCK_ID)))
    exists = session.execute(
        select(ModelVersion.id).where(ModelVersion.id == version_id).with_for_update()
    ).first()
    if exists is None:
        raise LookupError(f"no model version {version_id}")
    previous = session.scalars(
        select(ModelVersion.id).where(ModelVersion.status == ModelStatus.ACTIVE)
    ).one_or_none()
    if previous == version_id:
        return previous
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.status == ModelStatus.ACTIVE, ModelVersion.id != version_id)
        .values(status=ModelStatus.RETIRED)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.id == version_id)
        .values(status=ModelStatus.ACTIVE, activated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    session.add(
        ModelActivation(
            model_version_id=version_id,
            previous_version_id=previous,
            kind=ActivationKind(kind),
            activated_by=by,
            reason=reason,
        )
    )
    session.flush()
    session.expire_all()  # ORM objects loaded before still say the old statuses
    return previous


def lock_model_versions(session: Session) -> None:
    """Serialise changes to `model_versions` until this transaction ends (the advisory lock
    activations take). Two runs that register the same model folder, or the shipped
    checkpoint, on first use then go one after the other, and the second finds the first's
    row instead of failing on the unique name."""
    session.execute(select(func.pg_advisory_xact_lock(ACTIVATE_MODEL_LOCK_ID)))


def active_model_version(session: Session) -> ModelVersion | None:
    """The active model version, or None when none is active yet."""
    return session.scalars(
        select(ModelVersion).where(ModelVersion.status == ModelStatus.ACTIVE)
    ).one_or_none()


def model_version_by_name(session: Session, name: str) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).where(ModelVersion.name == name)).one_or_none()


def rollback_target(session: Session) -> ModelVersion | None:
    """The version `docflow models rollback` goes back to: the one that was active before the
    active one, or None when there is none.

    The activation history is replayed as a stack: an activation or a promotion pushes its
    version, a rollback pops. So rolling back twice after activating v1, v2, v3 goes to v2,
    then v1, never back to the version just rolled back from. A version made active by hand
    (SQL, no history row) counts as pushed on top.
    """
    stack: list[int] = []
    for version_id, kind in session.execute(
        select(ModelActivation.model_version_id, ModelActivation.kind).order_by(ModelActivation.id)
    ):
        if ActivationKind(kind) is ActivationKind.ROLLBACK:
            if stack:
                stack.pop()
        else:
            stack.append(version_id)
    active = active_model_version(session)
    if active is None:
        return None
    if not stack or stack[-1] != active.id:
        stack.append(active.id)
    # The same version twice in a row (activated again after a rollback) is one step back.
    while len(stack) >= 2 and stack[-2] == active.id:
        stack.pop(-2)
    return session.get(ModelVersion, stack[-2]) if len(stack) >= 2 else None


def model_activations(session: Session, version_id: int | None = None) -> list[ModelActivation]:
    """The activation history, oldest first: every change of the active version, or only the
    ones that made `version_id` active."""
    statement = select(ModelActivation).order_by(ModelActivation.id)
    if version_id is not None:
        statement = statement.where(ModelActivation.model_version_id == version_id)
    return list(session.scalars(statement))


@dataclass(frozen=True)
class ModelVersionRow:
    """One line of `docflow models`: a version, its parent's name and its headline F1."""

    id: int
    name: str
    status: str
    parent: str | None
    created_at: dt.datetime
    activated_at: dt.datetime | None
    f1: float | None
    uri: str


def list_model_versions(session: Session) -> list[ModelVersionRow]:
    """Every model version, oldest first. The F1 is the one its metrics lead with: the holdout
    F1 of a fine-tuned version, the validation F1 of a checkpoint's metrics.json."""
    parent = aliased(ModelVersion)
    rows = session.execute(
        select(ModelVersion, parent.name)
        .outerjoin(parent, parent.id == ModelVersion.parent_id)
        .order_by(ModelVersion.id)
    )
    return [
        ModelVersionRow(
            version.id,
            version.name,
            ModelStatus(version.status).value,
            parent_name,
            version.created_at,
            version.activated_at,
            headline_f1(version.metrics),
            version.uri,
        )
        for version, parent_name in rows
    ]


def headline_f1(metrics: Mapping[str, Any]) -> float | None:
    """The F1 a version's metrics lead with (see `list_model_versions`), None when they have
    none."""
    for path in (("f1",), ("overall", "f1"), ("validation", "overall", "f1"), ("best_f1",)):
        value: Any = metrics
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, int | float):
            return float(value)
    return None


def training_run_of_version(session: Session, version_id: int) -> TrainingRun | None:
    """The training run that produced `version_id` (None for a version registered from a
    folder or shipped with the package)."""
    return session.scalars(
        select(TrainingRun)
        .where(TrainingRun.result_version_id == version_id)
        .order_by(TrainingRun.id.desc())
        .limit(1)
    ).one_or_none()


def training_run_of_flow_run(session: Session, flow_run_id: uuid.UUID | str) -> TrainingRun | None:
    """The training run of the job a Prefect flow run opened (a run started through a server)."""
    return session.scalars(
        select(TrainingRun)
        .join(Job, Job.id == TrainingRun.job_id)
        .where(Job.flow_run_id == uuid.UUID(str(flow_run_id)))
        .order_by(TrainingRun.id.desc())
        .limit(1)
    ).one_or_none()


def job_of_flow_run(session: Session, flow_run_id: uuid.UUID | str) -> Job | None:
    return session.scalars(
        select(Job)
        .where(Job.flow_run_id == uuid.UUID(str(flow_run_id)))
        .order_by(Job.id.desc())
        .limit(1)
    ).one_or_none()


def stored_comparison(session: Session, name_a: str, name_b: str) -> TrainingRun | None:
    """The latest completed fine-tuning run that scored versions `name_a` and `name_b` on one
    holdout (the version it trained, and the version active then), in either role."""
    names = TrainingRun.metrics["active_version"].astext, TrainingRun.metrics["new_version"].astext
    return session.scalars(
        select(TrainingRun)
        .where(
            TrainingRun.kind == TrainingKind.FINETUNE,
            TrainingRun.status == TrainingStatus.COMPLETED,
            or_(
                (names[0] == name_a) & (names[1] == name_b),
                (names[0] == name_b) & (names[1] == name_a),
            ),
        )
        .order_by(TrainingRun.id.desc())
        .limit(1)
    ).one_or_none()


# ---------------------------------------------------------------------------------------------
# labels


@dataclass(frozen=True)
class LabelledDocument:
    document_id: int
    sha256: str
    bucket: str
    key: str
    media_type: str
    labels: dict[str, str] = field(default_factory=dict)
    page_count: int | None = None  # None until digitize has read the document


def store_labels(session: Session, document_id: int, labels: Mapping[str, str], source: str) -> int:
    """Store ground-truth values for a document; one value per (document, name, source), so
    storing again replaces. Returns the number of labels written."""
    if not labels:
        return 0
    statement = pg_insert(Label).values(
        [
            {"document_id": document_id, "name": name, "value": str(value), "source": source}
            for name, value in labels.items()
        ]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[Label.document_id, Label.name, Label.source],
            set_={"value": statement.excluded.value, "created_at": func.now()},
        )
    )
    return len(labels)


def labelled_documents(
    session: Session, sources: Iterable[str] | None = None
) -> list[LabelledDocument]:
    """Every document with at least one label, with its labels as {name: value}, by id.

    Where several sources label the same name, the most recently stored value wins (a review
    after an import corrects it). `sources` restricts which sources count.
    """
    latest = (
        select(Label.document_id, Label.name, Label.value)
        .distinct(Label.document_id, Label.name)
        .order_by(Label.document_id, Label.name, Label.created_at.desc(), Label.id.desc())
    )
    if sources is not None:
        latest = latest.where(Label.source.in_(list(sources)))
    latest = latest.subquery()
    rows = session.execute(
        select(
            Document.id,
            Document.sha256,
            Document.source_bucket,
            Document.source_key,
            Document.media_type,
            Document.page_count,
            latest.c.name,
            latest.c.value,
        )
        .join(latest, latest.c.document_id == Document.id)
        .order_by(Document.id, latest.c.name)
    )
    documents: dict[int, LabelledDocument] = {}
    for doc_id, sha, bucket, key, media_type, page_count, name, value in rows:
        if doc_id not in documents:
            documents[doc_id] = LabelledDocument(
                doc_id, sha, bucket, key, media_type, page_count=page_count
            )
        documents[doc_id].labels[name] = value
    return list(documents.values())


# ---------------------------------------------------------------------------------------------
# training runs


def start_training_run(
    session: Session,
    kind: TrainingKind | str,
    base_version_id: int | None = None,
    job_id: int | None = None,
    parameters: Mapping[str, Any] | None = None,
    train_size: int | None = None,
    holdout_size: int | None = None,
) -> int:
    """A training run in status 'running'; returns its id."""
    run = TrainingRun(
        kind=TrainingKind(kind),
        base_version_id=base_version_id,
        job_id=job_id,
        parameters=dict(parameters or {}),
        train_size=train_size,
        holdout_size=holdout_size,
        status=TrainingStatus.RUNNING,
    )
    session.add(run)
    session.flush()
    return run.id


def finish_training_run(
    session: Session,
    run_id: int,
    status: TrainingStatus | str,
    *,
    result_version_id: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    loss_curve: Sequence[Mapping[str, Any]] | None = None,
    train_size: int | None = None,
    holdout_size: int | None = None,
    error: str | None = None,
) -> None:
    """End a training run as 'completed' or 'failed'; values left None keep what is stored."""
    status = TrainingStatus(status)
    if status is TrainingStatus.RUNNING:
        raise ValueError("finish_training_run needs 'completed' or 'failed'")
    values: dict[str, Any] = {"status": status, "finished_at": func.now(), "error": error}
    optional = {
        "result_version_id": result_version_id,
        "metrics": dict(metrics) if metrics is not None else None,
        "loss_curve": [dict(point) for point in loss_curve] if loss_curve is not None else None,
        "train_size": train_size,
        "holdout_size": holdout_size,
    }
    values.update({name: value for name, value in optional.items() if value is not None})
    found = session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run_id)
        .values(**values)
        .returning(TrainingRun.id)
        .execution_options(synchronize_session=False)
    ).first()
    if found is None:
        raise LookupError(f"no training run {run_id}")
