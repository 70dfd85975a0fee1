"""Review: the queue of fields people should look at, the leases that keep two reviewers off
one item, and what a decision writes.

An item is one field name of one document. It is in the queue while it has no decision and
its current extraction's confidence is below the field's threshold (`review_thresholds`, else
the default the active model's reliability table gives), or it falls in the audit sample: a
fixed pseudo-random share of all fields (by a hash of the field row's id, so the sample does not
move between page loads) that measures how often confident answers are right.

Claiming takes the oldest job's items first. `FOR UPDATE SKIP LOCKED` keeps two claims running
at the same moment off the same rows, and the lease row itself (one per item, replaced only
when it has expired) is the final word: whoever's INSERT ... ON CONFLICT wrote the lease has
the item. What a decision writes is in `db.review_decisions`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.models import ModelStatus, ModelVersion
from db.models_review import Reviewer, ReviewThreshold
from db.review_queue import CANDIDATES, current_items, refresh_queue, thresholds_changed

DEFAULT_LEASE_SECONDS = 600
# The share of confident fields drawn into the audit sample, and the accuracy a confidence
# bucket must reach for its fields to skip review, when nobody has set either.
DEFAULT_AUDIT_RATE = 0.02
DEFAULT_TARGET_ACCURACY = 0.9
# Without a reliability table (a model registered without metrics) every field below this
# goes to review.
FALLBACK_THRESHOLD = 0.9
CLAIM_BATCH = 10
CLAIM_ROUNDS = 5


@dataclass(frozen=True)
class QueueFilter:
    field: str | None = None
    job_id: int | None = None
    model_version: str | None = None

    def params(self) -> dict[str, Any]:
        return {"field": self.field, "job": self.job_id, "model": self.model_version}


@dataclass(frozen=True)
class ReviewItem:
    """A leased item: the document, the field, and what the model said about it."""

    token: uuid.UUID
    expires_at: dt.datetime
    document_id: int
    name: str
    source_bucket: str
    source_key: str
    sha256: str
    media_type: str
    page_count: int | None
    field_id: int | None  # None: the model did not find this field on the document
    model_version_id: int | None
    model_version: str | None
    value: str | None
    raw_value: str | None
    value_num: Decimal | None
    value_date: dt.date | None
    confidence: float | None
    page: int | None
    box: tuple[int, int, int, int] | None
    threshold: float
    decided: str | None  # the latest decision's value when the item was decided before

    @property
    def audit(self) -> bool:
        """Confident enough to skip review: here because the audit sample drew it."""
        return self.confidence is not None and self.confidence >= self.threshold


# --- thresholds --------------------------------------------------------------------------------


def default_threshold(session: Session, target_accuracy: float = DEFAULT_TARGET_ACCURACY) -> float:
    """The lowest confidence from which every bucket of the active model's reliability table
    (answers on its validation set by confidence bucket) was right at least `target_accuracy`
    of the time; 1.0 when no bucket reaches it (review everything), `FALLBACK_THRESHOLD` when
    the model has no table."""
    metrics = session.scalar(
        select(ModelVersion.metrics).where(ModelVersion.status == ModelStatus.ACTIVE)
    )
    table = (metrics or {}).get("reliability") or []
    buckets = [b for b in table if b.get("count")]
    if not buckets:
        return FALLBACK_THRESHOLD
    threshold = 1.0
    for bucket in sorted(buckets, key=lambda b: b["low"], reverse=True):
        if bucket["correct"] / bucket["count"] < target_accuracy:
            break
        threshold = bucket["low"]
    return float(threshold)


def thresholds(session: Session, names: Sequence[str]) -> dict[str, float | None]:
    """The threshold set for each of `names` (None: the default applies)."""
    rows = dict(session.execute(select(ReviewThreshold.name, ReviewThreshold.threshold)).all())
    return {name: rows.get(name) for name in sorted(set(names) | set(rows))}


def set_threshold(session: Session, name: str, threshold: float | None, updated_by: str) -> None:
    """Set a field's threshold, or with None go back to the default."""
    thresholds_changed(session)
    if threshold is None:
        session.execute(text("DELETE FROM review_thresholds WHERE name = :n"), {"n": name})
        return
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"a threshold is between 0 and 1, not {threshold}")
    session.execute(
        text(
            "INSERT INTO review_thresholds (name, threshold, updated_by) VALUES (:n, :t, :by)"
            " ON CONFLICT (name) DO UPDATE SET threshold = EXCLUDED.threshold,"
            " updated_by = EXCLUDED.updated_by, updated_at = now()"
        ),
        {"n": name, "t": threshold, "by": updated_by},
    )


# --- reviewers ---------------------------------------------------------------------------------


def add_reviewer(session: Session, name: str, password_hash: str) -> int:
    """A new reviewer, or a new password for an existing one (enabled again). Returns the id."""
    return session.execute(
        text(
            "INSERT INTO reviewers (name, password_hash) VALUES (:n, :h) ON CONFLICT (name)"
            " DO UPDATE SET password_hash = EXCLUDED.password_hash, disabled = false"
            " RETURNING id"
        ),
        {"n": name, "h": password_hash},
    ).scalar_one()


def reviewer_by_name(session: Session, name: str) -> Reviewer | None:
    return session.scalar(select(Reviewer).where(Reviewer.name == name))


def reviewer_by_id(session: Session, reviewer_id: int) -> Reviewer | None:
    return session.get(Reviewer, reviewer_id)


# --- the queue ---------------------------------------------------------------------------------

LEASE = text(
    """
    INSERT INTO review_leases (document_id, name, reviewer_id, token, expires_at)
    VALUES (:document_id, :name, :reviewer, :token, now() + make_interval(secs => :seconds))
    ON CONFLICT (document_id, name) DO UPDATE
        SET reviewer_id = EXCLUDED.reviewer_id, token = EXCLUDED.token,
            leased_at = now(), expires_at = EXCLUDED.expires_at
        WHERE review_leases.expires_at <= now()
    RETURNING token
    """
)


def claim_next(
    session: Session,
    reviewer_id: int,
    queue_filter: QueueFilter = QueueFilter(),
    *,
    audit_rate: float = DEFAULT_AUDIT_RATE,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
) -> ReviewItem | None:
    """The next item for this reviewer, leased to them: one they already hold and have not
    decided, else the oldest job's first free item. None when the queue is empty. Commits."""
    held = session.execute(
        text(
            "SELECT l.token FROM review_leases AS l WHERE l.reviewer_id = :r"
            " AND l.expires_at > now() AND NOT EXISTS (SELECT 1 FROM review_decisions AS rd"
            " WHERE rd.lease_token = l.token) ORDER BY l.leased_at, l.document_id, l.name"
        ),
        {"r": reviewer_id},
    ).scalars()
    for token in held:
        item = item_by_token(session, token)
        if item is not None and _matches(item, queue_filter):
            return item
    refresh_queue(session, default_threshold(session), audit_rate)
    session.commit()
    params = {"reviewer": reviewer_id, "limit": CLAIM_BATCH, **queue_filter.params()}
    # Each round leases one of the first CLAIM_BATCH free items; a round finds none only when
    # other reviewers took all of them between the query and the lease, so a few rounds do.
    for _ in range(CLAIM_ROUNDS):
        candidates = session.execute(text(CANDIDATES), params).all()
        if not candidates:
            break
        for candidate in candidates:
            token = _lease(
                session, reviewer_id, candidate.document_id, candidate.name, lease_seconds
            )
            if token is not None:
                session.commit()
                return item_by_token(session, token)
        session.commit()
    session.commit()
    return None


def _matches(item: ReviewItem, queue_filter: QueueFilter) -> bool:
    return (queue_filter.field is None or item.name == queue_filter.field) and (
        queue_filter.model_version is None or item.model_version == queue_filter.model_version
    )


def _lease(
    session: Session, reviewer_id: int, document_id: int, name: str, seconds: int
) -> uuid.UUID | None:
    """Lease one item, or None when another reviewer has it. The item's advisory lock is tried
    without waiting (a claim skips what another claim is leasing at this moment, as SKIP LOCKED
    skips locked rows); the lease row then decides: an unexpired lease is never replaced."""
    free = session.execute(
        text("SELECT pg_try_advisory_xact_lock(hashtextextended(:item, 0))"),
        {"item": f"review:{document_id}:{name}"},
    ).scalar_one()
    if not free:
        return None
    return session.execute(
        LEASE,
        {
            "document_id": document_id,
            "name": name,
            "reviewer": reviewer_id,
            "token": uuid.uuid4(),
            "seconds": seconds,
        },
    ).scalar_one_or_none()


def claim_document(
    session: Session,
    reviewer_id: int,
    document_id: int,
    *,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
) -> tuple[list[ReviewItem], list[str]]:
    """Every field of a document for review at once: the fields its latest extraction found
    and those its model reads but did not find. Returns (the items now leased to this reviewer,
    the names another reviewer holds). Decided items are included: a new decision replaces the
    old one. Commits."""
    names = document_field_names(session, document_id)
    items, held_by_others = [], []
    for name in names:
        token = session.execute(
            text(
                "SELECT token FROM review_leases WHERE document_id = :d AND name = :n"
                " AND reviewer_id = :r AND expires_at > now()"
            ),
            {"d": document_id, "n": name, "r": reviewer_id},
        ).scalar_one_or_none()
        if token is None:
            token = _lease(session, reviewer_id, document_id, name, lease_seconds)
        if token is None:
            held_by_others.append(name)
        else:
            items.append(token)
    session.commit()
    return [item for token in items if (item := item_by_token(session, token))], held_by_others


def document_field_names(session: Session, document_id: int) -> list[str]:
    """The names a document's review covers: what its latest extraction answered, and every
    field its model version was evaluated on (`metrics.fields`), sorted by name."""
    latest = session.execute(
        text(
            "SELECT e.id, mv.metrics FROM extractions AS e"
            " JOIN model_versions AS mv ON mv.id = e.model_version_id"
            " WHERE e.document_id = :d ORDER BY e.created_at DESC, e.id DESC LIMIT 1"
        ),
        {"d": document_id},
    ).one_or_none()
    if latest is None:
        return []
    model_fields = set(((latest.metrics or {}).get("fields") or {}).keys())
    found = set(
        session.execute(
            text("SELECT DISTINCT name FROM fields WHERE extraction_id = :e"), {"e": latest.id}
        ).scalars()
    )
    return sorted(model_fields | found)


ITEM = text(
    f"""
    SELECT l.token, l.expires_at, l.document_id, l.name,
           d.source_bucket, d.source_key, d.sha256, d.media_type, d.page_count,
           c.field_id, c.model_version_id, mv.name AS model_version, c.threshold,
           f.value, COALESCE(f.raw_value, f.value) AS raw_value, f.value_num, f.value_date,
           f.confidence, f.page, f.box_x0, f.box_y0, f.box_x1, f.box_y1,
           (SELECT rd.value FROM review_decisions AS rd
            WHERE rd.document_id = l.document_id AND rd.name = l.name AND rd.decision <> 'skip'
            ORDER BY rd.decided_at DESC, rd.id DESC LIMIT 1) AS decided
    FROM review_leases AS l
    JOIN documents AS d ON d.id = l.document_id
    LEFT JOIN ({current_items("e.document_id = (SELECT document_id FROM review_leases WHERE token = :token)")}) AS c
        ON c.document_id = l.document_id AND c.name = l.name
    LEFT JOIN fields AS f ON f.id = c.field_id
    LEFT JOIN model_versions AS mv ON mv.id = c.model_version_id
    WHERE l.token = :token
    """
)


def item_by_token(session: Session, token: uuid.UUID | str) -> ReviewItem | None:
    """The leased item `token` names, or None when no lease has that token."""
    default = default_threshold(session)
    row = session.execute(ITEM, {"token": str(token), "default_threshold": default}).one_or_none()
    if row is None:
        return None
    box = None if row.box_x0 is None else (row.box_x0, row.box_y0, row.box_x1, row.box_y1)
    threshold = row.threshold if row.threshold is not None else default
    return ReviewItem(
        token=row.token,
        expires_at=row.expires_at,
        document_id=row.document_id,
        name=row.name,
        source_bucket=row.source_bucket,
        source_key=row.source_key,
        sha256=row.sha256,
        media_type=row.media_type,
        page_count=row.page_count,
        field_id=row.field_id,
        model_version_id=row.model_version_id,
        model_version=row.model_version,
        value=row.value,
        raw_value=row.raw_value,
        value_num=row.value_num,
        value_date=row.value_date,
        confidence=row.confidence,
        page=row.page,
        box=box,
        threshold=float(threshold),
        decided=row.decided,
    )


def release(session: Session, reviewer_id: int) -> int:
    """Give back every lease a reviewer holds (signing out). Returns how many."""
    return session.execute(
        text("DELETE FROM review_leases WHERE reviewer_id = :r"), {"r": reviewer_id}
    ).rowcount


__all__ = [
    "DEFAULT_AUDIT_RATE",
    "DEFAULT_LEASE_SECONDS",
    "QueueFilter",
    "ReviewItem",
    "add_reviewer",
    "claim_document",
    "claim_next",
    "default_threshold",
    "document_field_names",
    "item_by_token",
    "release",
    "reviewer_by_id",
    "reviewer_by_name",
    "set_threshold",
    "thresholds",
]
