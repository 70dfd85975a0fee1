"""The reads people run from the command line (`docflow jobs`, `fields`, `export`): each returns
the column names and the rows, as SQL gives them, for a table or a file. The writes the flows
make are in the other modules of `db` (`documents`, `jobs`, `extractions`, ...); the views
these read are in `db/views`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

Table = tuple[list[str], list[tuple[Any, ...]]]

RECENT_JOBS = text(
    """
    SELECT id, kind, status, started_at::timestamp(0) AS started,
           round(extract(epoch FROM finished_at - started_at)::numeric, 1) AS seconds,
           documents_seen AS documents, documents_extracted AS extracted,
           documents_failed AS failed, pages, left(error, 80) AS error
    FROM jobs ORDER BY id DESC LIMIT :limit
    """
)

CURRENT_FIELDS = text(
    """
    SELECT document_id, source_bucket, source_key, sha256, model_version, extracted_at,
           name, value, value_num, value_date, currency, confidence, page, box
    FROM current_fields
    WHERE (CAST(:since AS timestamptz) IS NULL OR extracted_at >= CAST(:since AS timestamptz))
    ORDER BY document_id, name
    """
)


def _table(session: Session, statement, **params) -> Table:
    result = session.execute(statement, params)
    return list(result.keys()), [tuple(row) for row in result]


def recent_jobs(session: Session, limit: int = 20) -> Table:
    """The newest jobs first: kind, status, start, seconds, counts, the start of any error."""
    return _table(session, RECENT_JOBS, limit=limit)


def fields_of_document(session: Session, document: str) -> Table:
    """The current fields of the documents `document` names: a document id, a sha256 (or its
    first 8+ hex characters) or an object key."""
    if document.isdigit():
        where, value = "document_id = :v", int(document)
    elif len(document) >= 8 and all(c in "0123456789abcdef" for c in document):
        where, value = "sha256 LIKE :v", f"{document}%"
    else:
        where = "document_id IN (SELECT document_id FROM document_sources WHERE key = :v)"
        value = document
    statement = text(
        "SELECT document_id, source_key, name, value, value_num, value_date, currency, "
        "round(confidence::numeric, 3) AS confidence, page, box "
        f"FROM current_fields WHERE {where} ORDER BY document_id, name"
    )
    return _table(session, statement, v=value)


def current_fields(session: Session, since: datetime | str | None = None) -> Table:
    """Every current field, one row per field, extracted at or after `since` when given."""
    return _table(session, CURRENT_FIELDS, since=since)


__all__ = ["current_fields", "fields_of_document", "recent_jobs"]
