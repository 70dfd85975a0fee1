"""The attempts a run makes at each document: counted when work on a document begins, and the
documents that used up `DOCFLOW_MAX_ATTEMPTS` failed with their last reason instead of claimed.

A document that breaks every run working on it (an error nobody foresaw, a process killed
while it is read) would otherwise go back to the queue forever. `flows/chunks.py` works on a
document with an attempt behind it alone, so a crash is charged to the document behind it;
`db.jobs.release_claim(attempt_spent=False)` gives the attempt back after a failure no document
can be behind (storage or the database unreachable).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from db.jobs import CRASHED_PREFIX, WAITING, claim_free, unclaimed
from db.models import Document, DocumentStatus

# What a document given up on says when its last attempt ended with no word: its claim ran
# out, or its job was declared crashed.
STOPPED_WITHOUT_FINISHING = (
    "the run working on it stopped without finishing it (killed, out of memory or crashed)"
)


def count_attempts(session: Session, job_id: int, document_ids: Iterable[int]) -> list[int]:
    """Work on these documents begins: each one `job_id` still holds counts one more attempt.
    Returns the ids counted, sorted.

    Counted here rather than at the claim, so a run killed with many documents claimed
    charges only those it had started: the others were never tried and owe nothing."""
    ids = sorted(set(document_ids))
    if not ids:
        return []
    counted = session.scalars(
        update(Document)
        .where(
            Document.id.in_(ids),
            Document.claimed_by_job_id == job_id,
            Document.status == DocumentStatus.PROCESSING,
        )
        .values(attempts=Document.attempts + 1)
        .returning(Document.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(counted)


@dataclass(frozen=True)
class GaveUp:
    """A document failed because it ran out of attempts, and why."""

    id: int
    bucket: str
    key: str
    attempts: int
    reason: str


def give_up_exhausted(
    session: Session, max_attempts: int, document_ids: Iterable[int] | None = None
) -> list[GaveUp]:
    """Fail the claimable documents (of `document_ids`, when given) that already had
    `max_attempts` attempts: their next one would be past the limit. Returns them by id.

    Each is 'failed' with "gave up after N attempts: <the last reason>": the error its last
    attempt was released with, or, when that attempt ended with no word (its claim ran out,
    its job was declared crashed, or nothing was recorded), `STOPPED_WITHOUT_FINISHING`. A
    reprocess (`claim_documents(reprocess=True)`) gives such a document a fresh count.
    Rows another transaction holds are skipped, as the claim skips them.
    """
    exhausted = (
        select(
            Document.id,
            Document.source_bucket,
            Document.source_key,
            Document.status,
            Document.attempts,
            Document.last_error,
        )
        .where(Document.status.in_(WAITING), claim_free(), Document.attempts >= max_attempts)
        .order_by(Document.id)
        .with_for_update(skip_locked=True)
    )
    if document_ids is not None:
        exhausted = exhausted.where(Document.id.in_(list(document_ids)))
    gave_up = [
        GaveUp(
            row.id,
            row.source_bucket,
            row.source_key,
            row.attempts,
            f"gave up after {row.attempts} attempts: {_last_reason(row.status, row.last_error)}",
        )
        for row in session.execute(exhausted)
    ]
    if gave_up:
        table = Document.__table__
        session.execute(
            update(table)
            .where(table.c.id == bindparam("doc_id"))
            .values(**unclaimed(DocumentStatus.FAILED), last_error=bindparam("gave_up_reason")),
            [{"doc_id": g.id, "gave_up_reason": g.reason} for g in gave_up],
        )
    return gave_up


def _last_reason(status: DocumentStatus | str, last_error: str | None) -> str:
    if status == DocumentStatus.PROCESSING or not last_error:
        return STOPPED_WITHOUT_FINISHING  # its claim ran out: the run holding it was lost
    if last_error.startswith(CRASHED_PREFIX):
        return STOPPED_WITHOUT_FINISHING
    return last_error
