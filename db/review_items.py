"""What the review queue holds for one digitize run or one document, by the queue's rule
(`db.review`): the counts a run reports in its `docflow.review.needed` event, and which of a
reviewed document's other fields stand as the model read them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.review import default_threshold
from db.review_queue import current_items

# --- what one digitize run left for review -----------------------------------------------------


@dataclass(frozen=True)
class JobReviewCounts:
    by_field: dict[str, int]  # field name -> items the job left for review
    documents: int  # documents with at least one of them

    @property
    def total(self) -> int:
        return sum(self.by_field.values())


LEFT_BY_JOB = text(
    f"""
    SELECT c.document_id, c.name
    FROM ({current_items("e.job_id = :job")}) AS c
    WHERE COALESCE(c.confidence, 0) < c.threshold
      AND NOT EXISTS (SELECT 1 FROM review_decisions AS rd WHERE rd.decision <> 'skip'
                      AND rd.document_id = c.document_id AND rd.name = c.name)
    """
)


def job_review_counts(session: Session, job_id: int) -> JobReviewCounts:
    """The items job `job_id` left in the review queue for confidence below the field's
    threshold, by the queue's rule (`current_items`: a document's latest extraction, a name's most
    confident row) restricted to the job's extractions, less items already decided. The audit
    sample of confident fields is drawn, not left over: not counted."""
    rows = session.execute(
        LEFT_BY_JOB, {"job": job_id, "default_threshold": default_threshold(session)}
    ).all()
    by_field: dict[str, int] = {}
    for row in rows:
        by_field[row.name] = by_field.get(row.name, 0) + 1
    return JobReviewCounts(dict(sorted(by_field.items())), len({row.document_id for row in rows}))


# --- what a reviewed document's unreviewed fields stand for -------------------------------------


@dataclass(frozen=True)
class UnreviewedFields:
    """Of one document's current fields without a decision: those confident enough to skip
    review (their values, accepted by default: what the audit sample measures), and those
    still waiting in the queue."""

    accepted: dict[str, str]
    waiting: frozenset[str]


UNREVIEWED = text(
    f"""
            SELECT c.document_id, c.name, f.value,
                   COALESCE(c.confidence, 0) >= c.threshold AS confident
            FROM ({current_items("e.document_id = ANY(:documents)")}) AS c
            JOIN fields AS f ON f.id = c.field_id
            WHERE NOT EXISTS (SELECT 1 FROM review_decisions AS rd WHERE rd.decision <> 'skip'
                              AND rd.document_id = c.document_id AND rd.name = c.name)
    """
)


def unreviewed_fields(session: Session, document_ids: Sequence[int]) -> dict[int, UnreviewedFields]:
    """Per document, its current fields that have no decision, split by the queue's rule: a
    confidence at or above the field's threshold was accepted without review, one below it is
    waiting for a reviewer."""
    if not document_ids:
        return {}
    rows = session.execute(
        UNREVIEWED,
        {"documents": list(document_ids), "default_threshold": default_threshold(session)},
    ).all()
    accepted: dict[int, dict[str, str]] = {d: {} for d in document_ids}
    waiting: dict[int, set[str]] = {d: set() for d in document_ids}
    for row in rows:
        if row.confident:
            accepted[row.document_id][row.name] = row.value
        else:
            waiting[row.document_id].add(row.name)
    return {d: UnreviewedFields(accepted[d], frozenset(waiting[d])) for d in document_ids}


__all__ = ["JobReviewCounts", "UnreviewedFields", "job_review_counts", "unreviewed_fields"]
