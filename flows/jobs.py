"""The `jobs` rows of flow runs: opened when a run starts, closed with its summary."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from prefect import task
from sqlalchemy import func, select

from db.models import Extraction, Job, JobKind, JobStatus
from db.models import Field as FieldRow
from flows.clients import sessions
from flows.retries import TASK_OPTIONS


@task(name="open-job", **TASK_OPTIONS)
def open_job(kind: str, parameters: dict[str, Any]) -> int:
    """A `jobs` row in status 'running', linked to the Prefect flow run."""
    from prefect.runtime import flow_run

    from db.jobs import open_job as open_job_row
    from db.session import session_scope

    with session_scope(sessions()) as session:
        return open_job_row(session, JobKind(kind), _flow_run_id(flow_run.id), parameters)


def _flow_run_id(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


@dataclass
class JobSummary:
    job_id: int
    status: str
    documents: int
    extracted: int
    failed: int
    pages: int
    seconds: float
    fields: list[dict[str, Any]]  # name, count, mean_confidence

    @classmethod
    def of(cls, job: Job, fields: list[dict[str, Any]] | None = None) -> JobSummary:
        """The summary of a `jobs` row (wall time 0 while it is still running)."""
        seconds = (job.finished_at - job.started_at).total_seconds() if job.finished_at else 0.0
        return cls(
            job.id,
            job.status.value,
            job.documents_seen,
            job.documents_extracted,
            job.documents_failed,
            job.pages,
            seconds,
            list(fields or []),
        )

    @property
    def pages_per_minute(self) -> float:
        return 60.0 * self.pages / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.status,
            "documents": self.documents,
            "extracted": self.extracted,
            "failed": self.failed,
            "pages": self.pages,
            "seconds": round(self.seconds, 2),
            "pages_per_minute": round(self.pages_per_minute, 1),
            "fields": self.fields,
        }


@task(name="finish-job", **TASK_OPTIONS)
def finish_job(
    job_id: int, status: str, error: str | None = None, extra_failed: int = 0
) -> JobSummary:
    """Close the job (its remaining claims go back to 'queued') and read its summary back:
    counts, wall time, and the fields it stored by name with their mean confidence."""
    from db.jobs import add_job_counts, close_job
    from db.session import session_scope

    with session_scope(sessions()) as session:
        if extra_failed:
            add_job_counts(
                session, job_id, documents_seen=extra_failed, documents_failed=extra_failed
            )
        close_job(session, job_id, JobStatus(status), error=error)
    with sessions()() as session:
        job = session.get(Job, job_id)
        rows = session.execute(
            select(FieldRow.name, func.count(), func.avg(FieldRow.confidence))
            .join(Extraction, Extraction.id == FieldRow.extraction_id)
            .where(Extraction.job_id == job_id)
            .group_by(FieldRow.name)
            .order_by(FieldRow.name)
        )
        fields = [
            {
                "name": name,
                "count": count,
                "mean_confidence": None if mean is None else round(float(mean), 4),
            }
            for name, count, mean in rows
        ]
        return JobSummary.of(job, fields)
