"""What a review decision writes: the trail row, the label, the fields' review status, and the
end of the lease. A decision names its lease by token; the same token twice writes once."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from db.labels import store_labels
from db.models import ReviewStatus
from db.models_review import ReviewDecisionKind
from db.review import ReviewItem, item_by_token
from db.review_queue import dequeue

STATUS_OF_DECISION = {
    ReviewDecisionKind.ACCEPT: ReviewStatus.ACCEPTED,
    ReviewDecisionKind.CORRECT: ReviewStatus.CORRECTED,
    ReviewDecisionKind.ABSENT: ReviewStatus.REJECTED,
}


class LeaseLost(Exception):
    """The decision's lease is not the reviewer's (it expired and someone else took the item,
    or it was never theirs)."""


@dataclass(frozen=True)
class DecisionResult:
    decision_id: int
    recorded: bool  # False: this lease's decision was already recorded; nothing was written


def decide(
    session: Session,
    reviewer_id: int,
    token: uuid.UUID | str,
    decision: ReviewDecisionKind | str,
    *,
    value: str | None = None,
    normalized: Mapping[str, Any] | None = None,
    page: int | None = None,
    box: Sequence[int] | None = None,
) -> DecisionResult:
    """Record a decision on the item leased by `token`. Accept keeps the model's value (and its
    normalised forms, page and box); correct takes `value` with `normalized`
    ({"value_num", "value_date"}) and, when it was built from OCR words, their `page` and
    `box`; absent records an empty label; skip records only the trail. Writes a `labels` row
    (source 'review') and the fields' review_status for all but skip, and ends the lease.
    The same token a second time returns the first decision and writes nothing. Raises
    `LeaseLost` when the lease is not this reviewer's. Commits."""
    decision = ReviewDecisionKind(decision)
    token = uuid.UUID(str(token))
    done = session.execute(
        text("SELECT id FROM review_decisions WHERE lease_token = :t"), {"t": token}
    ).scalar_one_or_none()
    if done is not None:
        return DecisionResult(done, recorded=False)
    holder = session.execute(
        text("SELECT reviewer_id FROM review_leases WHERE token = :t FOR UPDATE"), {"t": token}
    ).scalar_one_or_none()
    if holder != reviewer_id:
        session.rollback()
        raise LeaseLost("this item is no longer leased to you; it was given to another reviewer")
    item = item_by_token(session, token)
    assert item is not None  # the lease row is locked
    row = _decision_row(item, decision, value, normalized or {}, page, box)
    decision_id = session.execute(
        text(
            """
            INSERT INTO review_decisions (
                document_id, name, field_id, model_version_id, decision, value, value_num,
                value_date, page, box_x0, box_y0, box_x1, box_y1, model_value, confidence,
                audit, reviewer_id, lease_token)
            VALUES (:document_id, :name, :field_id, :model_version_id, :decision, :value,
                :value_num, :value_date, :page, :x0, :y0, :x1, :y1, :model_value, :confidence,
                :audit, :reviewer_id, :lease_token)
            ON CONFLICT (lease_token) DO NOTHING
            RETURNING id
            """
        ),
        {**row, "reviewer_id": reviewer_id, "lease_token": token},
    ).scalar_one_or_none()
    if decision_id is None:  # a concurrent submit of the same form won
        session.rollback()
        done = session.execute(
            text("SELECT id FROM review_decisions WHERE lease_token = :t"), {"t": token}
        ).scalar_one()
        return DecisionResult(done, recorded=False)
    if decision is not ReviewDecisionKind.SKIP:
        dequeue(session, item.document_id, item.name)
        store_labels(
            session, item.document_id, {item.name: row["value"]}, "review", reviewer_id=reviewer_id
        )
        session.execute(
            text(
                "UPDATE fields SET review_status = :status WHERE name = :name AND extraction_id"
                " IN (SELECT id FROM extractions WHERE document_id = :d)"
            ),
            {
                "status": STATUS_OF_DECISION[decision].value,
                "name": item.name,
                "d": item.document_id,
            },
        )
    session.execute(text("DELETE FROM review_leases WHERE token = :t"), {"t": token})
    session.commit()
    return DecisionResult(decision_id, recorded=True)


def _decision_row(
    item: ReviewItem,
    decision: ReviewDecisionKind,
    value: str | None,
    normalized: Mapping[str, Any],
    page: int | None,
    box: Sequence[int] | None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "document_id": item.document_id,
        "name": item.name,
        "field_id": item.field_id,
        "model_version_id": item.model_version_id,
        "decision": decision.value,
        "model_value": item.value,
        "confidence": item.confidence,
        "audit": item.audit,
        "value": None,
        "value_num": None,
        "value_date": None,
        "page": None,
        "x0": None,
        "y0": None,
        "x1": None,
        "y1": None,
    }
    if decision is ReviewDecisionKind.ACCEPT:
        if item.value is None:
            raise ValueError(f"there is no value of {item.name!r} to accept; correct it instead")
        row.update(value=item.value, value_num=item.value_num, value_date=item.value_date)
        page, box = item.page, item.box
    elif decision is ReviewDecisionKind.CORRECT:
        value = " ".join((value or "").split())
        if not value:
            raise ValueError("a correction needs a value; use 'not on this document' for none")
        row.update(
            value=value,
            value_num=normalized.get("value_num"),
            value_date=normalized.get("value_date"),
        )
    elif decision is ReviewDecisionKind.ABSENT:
        row["value"] = ""
        page, box = None, None
    if decision in (ReviewDecisionKind.ACCEPT, ReviewDecisionKind.CORRECT) and box is not None:
        row.update(page=page, x0=box[0], y0=box[1], x1=box[2], y1=box[3])
    elif decision is ReviewDecisionKind.CORRECT and page is not None:
        row["page"] = page
    return row


__all__ = ["DecisionResult", "LeaseLost", "decide"]
