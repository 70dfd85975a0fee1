"""The review tables: who reviews, the per-field confidence thresholds that send a field to
review, the leases that keep two reviewers off the same item, and every decision made.

An item of review is one field name of one document (`document_id`, `name`), not one `fields`
row: a field the model did not find can be reviewed too, and a decision outlives the
extraction it was made on (a reprocess replaces `fields` rows; current_fields still shows the
reviewer's value). Imported by `db.models`, so `Base.metadata` always holds these tables.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column, pg_enum


class ReviewDecisionKind(enum.StrEnum):
    ACCEPT = "accept"  # the model's value is right
    CORRECT = "correct"  # the right value is another one (typed, or built from OCR words)
    ABSENT = "absent"  # the field is not on this document: a label too (an empty value)
    SKIP = "skip"  # not decided; kept in the trail, writes no label


class Reviewer(Base):
    """A person who may sign in to the review application. Only the argon2 hash of the
    password is kept; a disabled reviewer cannot sign in but their decisions stay theirs."""

    __tablename__ = "reviewers"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[dt.datetime] = created_at_column()


class ReviewThreshold(Base):
    """A field whose confidence is below its threshold goes to review. Fields without a row
    use the default the active model's reliability table gives (`db.review_queue`)."""

    __tablename__ = "review_thresholds"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    threshold: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (CheckConstraint("threshold >= 0 AND threshold <= 1", name="unit_range"),)


class ReviewLease(Base):
    """Who is reviewing an item now, until when. `token` names this one lease: a decision
    is accepted only with the token of a lease its reviewer still holds, and the same token
    twice writes once (`review_decisions.lease_token` is unique)."""

    __tablename__ = "review_leases"

    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id", ondelete="CASCADE"))
    token: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    leased_at: Mapped[dt.datetime] = created_at_column()
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (PrimaryKeyConstraint("document_id", "name"),)


class ReviewDecision(Base):
    """Every decision a reviewer made, kept for good (the audit trail). The latest decision
    other than `skip` for a (document, name) is the value current_fields shows.

    `model_value` and `confidence` are what the model said when the decision was made; `audit`
    marks an item drawn into the random sample of confident fields, whose decisions measure
    how often the model is right at high confidence. `value` is NULL for skip, '' for absent.
    """

    __tablename__ = "review_decisions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text(collation="C"))
    field_id: Mapped[int | None] = mapped_column(ForeignKey("fields.id", ondelete="SET NULL"))
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    decision: Mapped[ReviewDecisionKind] = mapped_column(
        pg_enum(ReviewDecisionKind, "review_decision")
    )
    value: Mapped[str | None] = mapped_column(Text(collation="C"))
    value_num: Mapped[Decimal | None] = mapped_column(Numeric)
    value_date: Mapped[dt.date | None] = mapped_column(Date)
    page: Mapped[int | None] = mapped_column(Integer)
    box_x0: Mapped[int | None] = mapped_column(Integer)
    box_y0: Mapped[int | None] = mapped_column(Integer)
    box_x1: Mapped[int | None] = mapped_column(Integer)
    box_y1: Mapped[int | None] = mapped_column(Integer)
    model_value: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    audit: Mapped[bool] = mapped_column(Boolean, server_default="false")
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("reviewers.id", ondelete="SET NULL"))
    lease_token: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    decided_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        Index("ix_review_decisions_document_id_name", "document_id", "name", "decided_at"),
        Index("ix_review_decisions_decided_at", "decided_at"),
    )


class ReviewQueueItem(Base):
    """An item waiting for a decision (`db.review_queue` keeps the table up to date): the
    field row it stands for, its job (oldest first), its confidence, and whether the audit
    sample drew it (confident) rather than its confidence (unsure)."""

    __tablename__ = "review_queue"

    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    field_id: Mapped[int] = mapped_column(ForeignKey("fields.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    confidence: Mapped[float | None] = mapped_column(Float)
    audit: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        PrimaryKeyConstraint("document_id", "name"),
        Index("ix_review_queue_job_id_document_id_name", "job_id", "document_id", "name"),
    )


class ReviewQueueState(Base):
    """One row: when `review_queue` was last brought up to date, and what it was judged by."""

    __tablename__ = "review_queue_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    refreshed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    default_threshold: Mapped[float | None] = mapped_column(Float)
    audit_cutoff: Mapped[int | None] = mapped_column(Integer)
    # Bumped whenever a field's threshold is set; the queue was built at `built_...`.
    thresholds_version: Mapped[int] = mapped_column(Integer, server_default="0")
    built_thresholds_version: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)


__all__ = [
    "ReviewDecision",
    "ReviewDecisionKind",
    "ReviewLease",
    "ReviewQueueItem",
    "ReviewQueueState",
    "ReviewThreshold",
    "Reviewer",
]
