"""The numbers of the review dashboard: what waits for review, how often the model is right at
each confidence (from reviewers' decisions), how fast decisions come in and from whom, and how
many labels a new fine-tuning run would get that the last one did not have.

Every function takes a `Session`, only reads, and returns frozen dataclasses (no ORM objects).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.review import DEFAULT_AUDIT_RATE, default_threshold
from db.review_queue import BACKLOG, refresh_queue

RELIABILITY_EDGES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


@dataclass(frozen=True)
class BacklogRow:
    """Items of one field name, extracted by one model version, waiting for a decision."""

    name: str
    model_version: str
    below_threshold: int  # unsure: every one of them is reviewed
    audit: int  # confident, drawn into the audit sample
    waiting: int  # both


@dataclass(frozen=True)
class ReliabilityRow:
    """Reviewed answers of one field name and model version whose confidence is in
    [low, high) (the last bucket includes its high edge), and how many the reviewer accepted."""

    name: str
    model_version: str | None  # None: the version was deleted since
    low: float
    high: float
    count: int
    accepted: int
    accuracy: float  # accepted / count


@dataclass(frozen=True)
class HourRow:
    hour: dt.datetime  # the start of the hour
    decisions: int  # accept, correct and absent; skips are not decisions


@dataclass(frozen=True)
class ReviewerRow:
    reviewer: str | None  # None: the reviewer was deleted since
    decisions: int  # accepted + corrected + absent
    accepted: int
    corrected: int
    absent: int
    skipped: int


@dataclass(frozen=True)
class SourceCount:
    source: str
    labels: int
    documents: int


@dataclass(frozen=True)
class NextFinetune:
    """Labels stored since the last completed fine-tuning run read its labels: what a new run
    would train or be scored on that the last one did not see (a label stored again, such as a
    reviewer's correction of an imported value, counts as new)."""

    last_run_id: int | None  # None: no fine-tuning run has completed; every label counts
    since: dt.datetime | None  # when that run's job started, just before it read the labels
    last_run_finished_at: dt.datetime | None
    labels: int
    documents: int
    by_source: tuple[SourceCount, ...]


# --- the backlog -------------------------------------------------------------------------------


def review_backlog(session: Session, *, audit_rate: float = DEFAULT_AUDIT_RATE) -> list[BacklogRow]:
    """Items waiting for a decision per (field name, model version), by name and version: the
    review queue (`db.review_queue`) as no particular reviewer sees it. An item leased to a
    reviewer or skipped by one still waits; one with a decision other than skip does not.
    `audit_rate` must be the rate the review application claims with, or the audit counts
    describe another sample."""
    refresh_queue(session, default_threshold(session), audit_rate)
    session.commit()
    rows = session.execute(text(BACKLOG)).all()
    return [BacklogRow(r.name, r.model_version, r.below, r.audit, r.below + r.audit) for r in rows]


# --- reliability -------------------------------------------------------------------------------


def audit_reliability(
    session: Session,
    edges: Sequence[float] = RELIABILITY_EDGES,
    *,
    audit_only: bool = False,
) -> list[ReliabilityRow]:
    """How often the model's answer was right, per (field name, model version, confidence
    bucket), from reviewers' decisions; only buckets with decisions, by name, version and low.

    `edges` are the buckets' bounds, increasing: [edges[i], edges[i + 1]), the last one closed.
    An answer counts once: the latest decision other than skip on its (document, name, model
    version), so a second look at the same answer replaces the first rather than adding to it,
    while the answers of two model versions on one document both count. Right means the
    reviewer accepted it; correct and absent mean it was wrong. Answers without a confidence
    (fields the model did not find, reviewed with the whole document) are left out.

    Why each bucket's accuracy is an unbiased estimate: below its field's threshold every answer
    goes to review (a census), and above it the audit sample draws answers by a hash of the
    field row's id, which has nothing to do with whether the answer is right (a random sample).
    Two caveats: a bucket that straddles a threshold pools a census with a sample, so it
    over-weights its unsure part (put an edge at each threshold, or use `audit_only`); and
    answers above the threshold reviewed with their whole document were chosen by a person,
    yet are marked audit too (the flag records confidence >= threshold at decision time).

    `audit_only` keeps only decisions marked audit (confidence at or above the threshold when
    decided): the accuracy of the answers that skip review."""
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(a >= b for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"edges must be at least two increasing numbers, not {edges}")
    rows = session.execute(
        text(
            """
            WITH judged AS (
                SELECT DISTINCT ON (rd.document_id, rd.name, rd.model_version_id)
                       rd.name, rd.model_version_id, rd.confidence, rd.decision
                FROM review_decisions AS rd
                WHERE rd.decision <> 'skip' AND rd.confidence IS NOT NULL
                  AND (rd.audit OR NOT :audit_only)
                ORDER BY rd.document_id, rd.name, rd.model_version_id,
                         rd.decided_at DESC, rd.id DESC
            )
            SELECT j.name, mv.name AS model_version,
                   LEAST(width_bucket(j.confidence, CAST(:edges AS float8[])), :buckets)
                       AS bucket,
                   count(*) AS count,
                   count(*) FILTER (WHERE j.decision = 'accept') AS accepted
            FROM judged AS j
            LEFT JOIN model_versions AS mv ON mv.id = j.model_version_id
            WHERE j.confidence >= :low AND j.confidence <= :high
            GROUP BY 1, 2, 3
            ORDER BY 1, 2 NULLS LAST, 3
            """
        ),
        {
            "edges": edges,
            "buckets": len(edges) - 1,
            "low": edges[0],
            "high": edges[-1],
            "audit_only": audit_only,
        },
    ).all()
    return [
        ReliabilityRow(
            name=r.name,
            model_version=r.model_version,
            low=edges[r.bucket - 1],
            high=edges[r.bucket],
            count=r.count,
            accepted=r.accepted,
            accuracy=r.accepted / r.count,
        )
        for r in rows
    ]


# --- pace --------------------------------------------------------------------------------------

# The start of the window of the last `:hours` hours: the current hour and the ones before it.
WINDOW_START = "date_trunc('hour', now()) - make_interval(hours => CAST(:hours AS int) - 1)"


DECISIONS_PER_HOUR = text(
    f"""
            SELECT h.hour, count(rd.id) AS decisions
            FROM generate_series({WINDOW_START}, date_trunc('hour', now()), interval '1 hour')
                 AS h(hour)
            LEFT JOIN review_decisions AS rd
                   ON rd.decision <> 'skip'
                  AND rd.decided_at >= h.hour AND rd.decided_at < h.hour + interval '1 hour'
            GROUP BY h.hour
            ORDER BY h.hour
    """
)

DECISIONS_BY_REVIEWER = text(
    f"""
            SELECT r.name AS reviewer,
                   count(*) FILTER (WHERE rd.decision <> 'skip') AS decisions,
                   count(*) FILTER (WHERE rd.decision = 'accept') AS accepted,
                   count(*) FILTER (WHERE rd.decision = 'correct') AS corrected,
                   count(*) FILTER (WHERE rd.decision = 'absent') AS absent,
                   count(*) FILTER (WHERE rd.decision = 'skip') AS skipped
            FROM review_decisions AS rd
            LEFT JOIN reviewers AS r ON r.id = rd.reviewer_id
            WHERE rd.decided_at >= {WINDOW_START}
            GROUP BY r.name
            ORDER BY decisions DESC, r.name NULLS LAST
    """
)


def decisions_per_hour(session: Session, hours: int = 24) -> list[HourRow]:
    """Decisions (skips left out) per hour over the current hour and the `hours - 1` before
    it, oldest first, hours without decisions included with 0."""
    _check_hours(hours)
    rows = session.execute(DECISIONS_PER_HOUR, {"hours": hours}).all()
    return [HourRow(r.hour, r.decisions) for r in rows]


def decisions_by_reviewer(session: Session, hours: int = 24) -> list[ReviewerRow]:
    """What each reviewer decided in the same window as `decisions_per_hour`, most decisions
    first; reviewers with nothing in the window are left out."""
    _check_hours(hours)
    rows = session.execute(DECISIONS_BY_REVIEWER, {"hours": hours}).all()
    return [
        ReviewerRow(r.reviewer, r.decisions, r.accepted, r.corrected, r.absent, r.skipped)
        for r in rows
    ]


def _check_hours(hours: int) -> None:
    if hours < 1:
        raise ValueError(f"the window is at least one hour, not {hours}")


# --- the next fine-tuning run ------------------------------------------------------------------


# Labels stored since :since (all of them when it is NULL).
_NEW = "CAST(:since AS timestamptz) IS NULL OR created_at >= :since"
NEW_LABELS_BY_SOURCE = text(
    "SELECT source, count(*) AS labels, count(DISTINCT document_id) AS documents"
    f" FROM labels WHERE {_NEW} GROUP BY source ORDER BY source"
)
NEW_LABELS = text(
    f"SELECT count(*) AS labels, count(DISTINCT document_id) AS documents FROM labels WHERE {_NEW}"
)


def labels_for_next_finetune(session: Session) -> NextFinetune:
    """Labels stored since the last completed fine-tuning run began, by source and in
    documents. The cut is the start of that run's job, which opens just before the run reads
    the labelled documents (the training run row itself is written after they are loaded);
    a run without a job uses its own start. Without a completed run every label counts."""
    last = session.execute(
        text(
            """
            SELECT r.id, COALESCE(j.started_at, r.started_at) AS since, r.finished_at
            FROM training_runs AS r
            LEFT JOIN jobs AS j ON j.id = r.job_id
            WHERE r.kind = 'finetune' AND r.status = 'completed'
            ORDER BY since DESC, r.id DESC
            LIMIT 1
            """
        )
    ).one_or_none()
    since = last.since if last is not None else None
    by_source = session.execute(NEW_LABELS_BY_SOURCE, {"since": since}).all()
    total = session.execute(NEW_LABELS, {"since": since}).one()
    return NextFinetune(
        last_run_id=last.id if last is not None else None,
        since=since,
        last_run_finished_at=last.finished_at if last is not None else None,
        labels=total.labels,
        documents=total.documents,
        by_source=tuple(SourceCount(r.source, r.labels, r.documents) for r in by_source),
    )


__all__ = [
    "RELIABILITY_EDGES",
    "BacklogRow",
    "HourRow",
    "NextFinetune",
    "ReliabilityRow",
    "ReviewerRow",
    "SourceCount",
    "audit_reliability",
    "decisions_by_reviewer",
    "decisions_per_hour",
    "labels_for_next_finetune",
    "review_backlog",
]
