"""Jobs and the documents they hold: opening, counting and closing a job, finding and marking
the ones whose process died, and claiming documents for a job (claim, renew, fail, release),
and the attempt given back by a release that is not the document's doing (the attempts
themselves are counted and given up on in `db.attempts`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from db.models import Document, DocumentStatus, Job, JobKind, JobStatus

# How the documents a crashed job held are released (`mark_crashed_jobs`).
CRASHED_PREFIX = "job crashed: "


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
) -> JobStatus:
    """Finish a job: set its final status, finish time, error and (given) counts. Returns the
    status the job now has.

    A job already declared `crashed` stays `crashed`: another run took its documents then, so
    `completed` would claim work that run did. Its run was only slow, and is ending after all:
    the close appends that to the crash's error ("…; the run itself ended later: completed")
    and sets the finish time to now. A finished job holds no claims: documents it still has
    claimed go back to 'queued'.
    """
    status = JobStatus(status)
    if status is JobStatus.RUNNING:
        raise ValueError("close_job needs a final status, not 'running'")
    current = session.execute(
        select(Job.status, Job.error).where(Job.id == job_id).with_for_update()
    ).first()
    if current is None:
        raise LookupError(f"no job {job_id}")
    values: dict[str, Any] = {"status": status, "finished_at": func.now(), "error": error}
    if current.status == JobStatus.CRASHED:
        ended = f"the run itself ended later: {status.value}" + (f" ({error})" if error else "")
        values.update(
            status=JobStatus.CRASHED, error="; ".join(filter(None, [current.error, ended]))
        )
    counts = {
        "documents_seen": documents_seen,
        "documents_extracted": documents_extracted,
        "documents_failed": documents_failed,
        "pages": pages,
    }
    values.update({name: count for name, count in counts.items() if count is not None})
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    _release_claims_of_jobs(session, [job_id], reason=None)
    return JobStatus(values["status"])


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
    _release_claims_of_jobs(session, crashed, reason=f"{CRASHED_PREFIX}{error}")
    return sorted(crashed)


def abandoned_jobs(
    session: Session, kind: JobKind | str, ttl_seconds: float, *, exclude: Iterable[int] = ()
) -> list[int]:
    """Running jobs of `kind` that show no sign of life: the process behind them is gone.

    A live digitize job renews its claims all the while a chunk is worked on (`renew_claims`,
    from the chunk's heartbeat), so a job is abandoned when it still holds claims but every one
    of them has expired, or when it holds none and started more than `ttl_seconds` ago (killed
    before it claimed anything).
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


def job_of_flow_run(session: Session, flow_run_id: uuid.UUID | str) -> Job | None:
    return session.scalars(
        select(Job)
        .where(Job.flow_run_id == uuid.UUID(str(flow_run_id)))
        .order_by(Job.id.desc())
        .limit(1)
    ).one_or_none()


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


def hold_claims(session: Session, job_id: int, document_ids: Iterable[int]) -> list[int]:
    """Of `document_ids`, those `job_id` still holds ('processing' and claimed by it), locked
    until the transaction ends; sorted. The check before any write that finishes documents.

    Rows are locked in id order (two transactions locking overlapping sets cannot deadlock),
    and a row another transaction is claiming is waited for, then checked again: a claim taken
    meanwhile no longer qualifies. An expired claim that no other run took is still held.
    """
    ids = sorted(set(document_ids))
    if not ids:
        return []
    return list(
        session.scalars(
            select(Document.id)
            .where(
                Document.id.in_(ids),
                Document.claimed_by_job_id == job_id,
                Document.status == DocumentStatus.PROCESSING,
            )
            .order_by(Document.id)
            .with_for_update()
        )
    )


def _release_claims_of_jobs(session: Session, job_ids: list[int], reason: str | None) -> None:
    if not job_ids:
        return
    values: dict[str, Any] = unclaimed(DocumentStatus.QUEUED)
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


def unclaimed(status: DocumentStatus) -> dict[str, Any]:
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
    # Attempts at it that began before this claim and did not finish it: 0 the first time.
    # A document with one behind it may be what killed the run that made it (flows/chunks.py).
    attempts: int = 0


WAITING = (DocumentStatus.NEW, DocumentStatus.QUEUED, DocumentStatus.PROCESSING)
FINISHED = (DocumentStatus.FAILED, DocumentStatus.EXTRACTED)


def claim_free() -> ColumnElement[bool]:
    """Only 'processing' rows carry a claim; for them an expired claim is what makes them
    claimable. The other statuses have NULL claim columns."""
    return or_(Document.claim_expires_at.is_(None), Document.claim_expires_at <= func.now())


def claim_documents(
    session: Session,
    job_id: int,
    limit: int,
    ttl_seconds: float,
    document_ids: Iterable[int] | None = None,
    reprocess: bool = False,
    max_attempts: int | None = None,
) -> list[ClaimedDocument]:
    """Claim up to `limit` documents for `job_id`, oldest first; they become 'processing'.

    Claimable: documents in 'new' or 'queued' (also 'failed' and 'extracted' when `reprocess`),
    and documents whose claim has expired (its job crashed or stalled past `ttl_seconds`).
    `document_ids` restricts the claim to those documents (a triggered run). With
    `max_attempts`, a document that already had that many attempts is never claimed: call
    `db.attempts.give_up_exhausted` first, in the same transaction, to fail those.

    The claim counts no attempt (`db.attempts.count_attempts` does, when work on the
    document begins). A reprocess of a finished document starts its count again from zero;
    a finished document otherwise keeps the count it took.

    Rows are locked with FOR UPDATE SKIP LOCKED, so concurrent claimers pass over each other's
    rows instead of waiting, and never both get one document: a row another transaction
    claimed and committed meanwhile is re-checked after its lock and no longer qualifies.
    """
    if limit <= 0:
        return []
    statuses = list(WAITING) + (list(FINISHED) if reprocess else [])
    candidates = (
        select(Document.id)
        .where(Document.status.in_(statuses), claim_free())
        .order_by(Document.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if max_attempts is not None:
        untried = Document.attempts < max_attempts
        if reprocess:
            untried = or_(untried, Document.status.in_(FINISHED))
        candidates = candidates.where(untried)
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
            # SET reads the row as it was: a reprocessed document starts from zero again.
            attempts=case((Document.status.in_(FINISHED), 0), else_=Document.attempts),
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
            Document.attempts,
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
    session: Session,
    document_id: int,
    job_id: int,
    reason: str | None = None,
    *,
    attempt_spent: bool = True,
) -> bool:
    """Not done, and not failed for good (storage timeout, out of memory, an unexpected error):
    back to 'queued', so the next run claims it again. Same ownership rule and return value as
    mark_document_failed. The attempt counted when work on it began stays spent, unless
    `attempt_spent` is False: a failure no document can be behind (the storage or the
    database unreachable) gives it back."""
    extra = {} if attempt_spent else {"attempts": func.greatest(Document.attempts - 1, 0)}
    return _finish_claim(session, document_id, job_id, DocumentStatus.QUEUED, reason, extra)


def _finish_claim(
    session: Session,
    document_id: int,
    job_id: int,
    status: DocumentStatus,
    reason: str | None,
    extra: dict[str, Any] | None = None,
) -> bool:
    values = unclaimed(status) | (extra or {})
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
