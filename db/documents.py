"""Documents: registering the objects found in storage as documents (one per content, by
sha256), what discovery may skip, and how many documents are in each status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from db.models import Document, DocumentSource, DocumentStatus

# Rows per multi-row INSERT ... VALUES statement: large enough that round trips do not
# dominate, small enough to stay well below PostgreSQL's 65535 bind parameters per statement.
ROWS_PER_STATEMENT = 1000


def _chunks(items: Sequence[Any], size: int = ROWS_PER_STATEMENT) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


def document_at(session: Session, bucket: str, key: str) -> tuple[int, str] | None:
    """(id, sha256) of the document whose bytes the object at `bucket`/`key` held when it was
    last registered; None for an object never registered."""
    row = session.execute(
        select(Document.id, Document.sha256)
        .join(DocumentSource, DocumentSource.document_id == Document.id)
        .where(DocumentSource.bucket == bucket, DocumentSource.key == key)
    ).first()
    return (row.id, row.sha256) if row is not None else None


def has_known_source(session: Session, document_id: int) -> bool:
    """Whether any registered object still holds the document's bytes (as far as docflow saw
    last): False once every object it was registered from was overwritten with other bytes."""
    found = session.execute(
        select(DocumentSource.id).where(DocumentSource.document_id == document_id).limit(1)
    ).first()
    return found is not None


def document_status_counts(session: Session) -> dict[str, int]:
    """How many documents are in each status (every status present, zero included)."""
    counts = dict.fromkeys((status.value for status in DocumentStatus), 0)
    for status, count in session.execute(
        select(Document.status, func.count()).group_by(Document.status)
    ):
        counts[DocumentStatus(status).value] = count
    return counts
