"""Training runs: starting and finishing one, marking the ones whose process died, and finding
the run behind a model version, a Prefect flow run or a stored comparison of two versions."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from db.jobs import mark_crashed_jobs
from db.models import Job, JobKind, JobStatus, TrainingKind, TrainingRun, TrainingStatus

# The session-level advisory lock a fine-tuning run holds from start to end ("finetune" in
# ASCII): at most one runs at a time, and PostgreSQL lets go of it when the process holding it
# dies, so a run that takes it knows every other fine-tuning job still 'running' is dead.
FINETUNE_LOCK_ID = 0x66696E6574756E65


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


def mark_crashed_training_jobs(session: Session, kind: JobKind | str, error: str) -> list[int]:
    """Mark every running job of `kind` crashed, and its training runs still 'running' failed,
    both with `error`; returns the job ids. Call it only while holding the lock that every live
    job of `kind` holds (`FINETUNE_LOCK_ID`): then none of them can still be alive."""
    running = list(
        session.scalars(
            select(Job.id).where(Job.kind == JobKind(kind), Job.status == JobStatus.RUNNING)
        )
    )
    crashed = mark_crashed_jobs(session, job_ids=running, error=error) if running else []
    if crashed:
        # training_status has no 'crashed' (a native enum; a new label needs a migration):
        # the run failed, and its error says how.
        session.execute(
            update(TrainingRun)
            .where(TrainingRun.job_id.in_(crashed), TrainingRun.status == TrainingStatus.RUNNING)
            .values(status=TrainingStatus.FAILED, finished_at=func.now(), error=error)
            .execution_options(synchronize_session=False)
        )
    return crashed


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
