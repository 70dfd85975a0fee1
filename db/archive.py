"""The archive files recorded per document (`archive_outputs`): which exist, and recording new
ones. The files themselves are in the archive bucket; `flows/archive.py` writes them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import ArchiveKind, ArchiveOutput

# What a new record of the same (document, kind, engine) replaces.
REPLACED = ("bucket", "key", "size_bytes", "content_sha256", "pdfa", "note", "job_id")


@dataclass(frozen=True)
class ArchiveRecord:
    """One archive file written for a document, as `record_archive_outputs` stores it."""

    document_id: int
    kind: ArchiveKind
    ocr_engine: str
    bucket: str
    key: str
    size_bytes: int
    content_sha256: str
    pdfa: bool | None = None
    note: str | None = None
    job_id: int | None = None


def archived_kinds(
    session: Session, document_ids: Sequence[int], ocr_engine: str
) -> dict[int, dict[ArchiveKind, ArchiveOutput]]:
    """document id -> the archive files recorded for it from OCR by `ocr_engine`, by kind."""
    found: dict[int, dict[ArchiveKind, ArchiveOutput]] = {}
    if not document_ids:
        return found
    rows = session.scalars(
        select(ArchiveOutput).where(
            ArchiveOutput.document_id.in_(document_ids), ArchiveOutput.ocr_engine == ocr_engine
        )
    )
    for row in rows:
        found.setdefault(row.document_id, {})[row.kind] = row
    return found


def record_archive_outputs(session: Session, records: Iterable[ArchiveRecord]) -> int:
    """Record written files; a file recorded before for the same (document, kind, engine) is
    replaced by the new record (it was written again because its object had gone). Returns how
    many were recorded."""
    count = 0
    for record in records:
        values = {
            "document_id": record.document_id,
            "kind": record.kind,
            "ocr_engine": record.ocr_engine,
            "bucket": record.bucket,
            "key": record.key,
            "size_bytes": record.size_bytes,
            "content_sha256": record.content_sha256,
            "pdfa": record.pdfa,
            "note": record.note,
            "job_id": record.job_id,
        }
        statement = insert(ArchiveOutput).values(**values)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["document_id", "kind", "ocr_engine"],
                set_={key: statement.excluded[key] for key in REPLACED}
                | {"created_at": func.now()},
            )
        )
        count += 1
    return count


__all__ = ["ArchiveRecord", "archived_kinds", "record_archive_outputs"]
