"""Ground-truth labels: storing (and removing) a document's labels per source, and reading
every labelled document with its latest value per field and the source that gave it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from db.models import Document, Label


@dataclass(frozen=True)
class LabelledDocument:
    document_id: int
    sha256: str
    bucket: str
    key: str
    media_type: str
    labels: dict[str, str] = field(default_factory=dict)
    page_count: int | None = None  # None until digitize has read the document
    sources: dict[str, str] = field(default_factory=dict)  # name -> source of labels[name]


def store_labels(
    session: Session,
    document_id: int,
    labels: Mapping[str, str],
    source: str,
    *,
    reviewer_id: int | None = None,
) -> int:
    """Store ground-truth values for a document; one value per (document, name, source), so
    storing again replaces. An empty value says the field is not on the document. Returns the
    number of labels written."""
    if not labels:
        return 0
    statement = pg_insert(Label).values(
        [
            {
                "document_id": document_id,
                "name": name,
                "value": str(value),
                "source": source,
                "reviewer_id": reviewer_id,
            }
            for name, value in labels.items()
        ]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[Label.document_id, Label.name, Label.source],
            set_={
                "value": statement.excluded.value,
                "reviewer_id": statement.excluded.reviewer_id,
                "created_at": func.now(),
            },
        )
    )
    return len(labels)


def delete_labels(session: Session, document_id: int, source: str) -> int:
    """Remove the labels `source` gave a document; returns how many there were."""
    result = session.execute(
        delete(Label).where(Label.document_id == document_id, Label.source == source)
    )
    return result.rowcount


def labelled_documents(
    session: Session, sources: Iterable[str] | None = None
) -> list[LabelledDocument]:
    """Every document with at least one label, with its labels as {name: value}, by id.

    Where several sources label the same name, the most recently stored value wins (a review
    after an import corrects it); each document's `sources` says which source gave each value.
    The `sources` argument restricts which sources count.
    """
    latest = (
        select(Label.document_id, Label.name, Label.value, Label.source)
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
            latest.c.source,
        )
        .join(latest, latest.c.document_id == Document.id)
        .order_by(Document.id, latest.c.name)
    )
    documents: dict[int, LabelledDocument] = {}
    for doc_id, sha, bucket, key, media_type, page_count, name, value, source in rows:
        if doc_id not in documents:
            documents[doc_id] = LabelledDocument(
                doc_id, sha, bucket, key, media_type, page_count=page_count
            )
        documents[doc_id].labels[name] = value
        documents[doc_id].sources[name] = source
    return list(documents.values())
