"""The schema: one SQLAlchemy 2 class per table, in the order a document meets them.

Alembic owns every change to the live schema (`db/migrations/`); these classes are what the
query functions and the migration's autogenerate check read. PostgreSQL types are used where
they serve people who query by hand: TIMESTAMPTZ, NUMERIC and DATE for normalised values,
JSONB for parameters and metrics, native enums for every status.

Status life cycles:
    documents:      new -> processing -> extracted | failed; a transient failure releases the
                    claim back to queued; reprocess takes failed/extracted back to processing.
    jobs:           running -> completed | failed | crashed
    model_versions: candidate -> active -> retired (at most one active, enforced by an index);
                    every change of the active version is a `model_activations` row
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Constraint names follow one convention, so migrations can drop them by a predictable name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DocumentStatus(enum.StrEnum):
    NEW = "new"
    QUEUED = "queued"
    PROCESSING = "processing"
    EXTRACTED = "extracted"
    FAILED = "failed"


class JobKind(enum.StrEnum):
    DIGITIZE = "digitize"
    FINETUNE = "finetune"
    PRETRAIN = "pretrain"


class JobStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CRASHED = "crashed"


class ReviewStatus(enum.StrEnum):
    UNREVIEWED = "unreviewed"
    ACCEPTED = "accepted"
    CORRECTED = "corrected"
    REJECTED = "rejected"


class ModelStatus(enum.StrEnum):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"


class ActivationKind(enum.StrEnum):
    ACTIVATE = "activate"  # someone named the version (or registered it as active)
    PROMOTE = "promote"  # the finetune flow: it beat the active version on the holdout
    ROLLBACK = "rollback"  # back to the version active before the current one


class ArchiveKind(enum.StrEnum):
    SEARCHABLE_PDF = "searchable_pdf"
    ALTO = "alto"
    HOCR = "hocr"


class TrainingKind(enum.StrEnum):
    FINETUNE = "finetune"
    PRETRAIN = "pretrain"


class TrainingStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


def pg_enum(enum_class: type[enum.Enum], name: str) -> Enum:
    """A native PostgreSQL enum whose labels are the members' values ('new'), not names ('NEW')."""
    return Enum(enum_class, name=name, values_callable=lambda members: [m.value for m in members])


def created_at_column() -> Mapped[dt.datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Job(Base):
    """One flow run: what it was asked to do, how it ended, and what it got through."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[JobKind] = mapped_column(pg_enum(JobKind, "job_kind"))
    flow_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), nullable=False
    )
    status: Mapped[JobStatus] = mapped_column(
        pg_enum(JobStatus, "job_status"), server_default=JobStatus.RUNNING.value
    )
    documents_seen: Mapped[int] = mapped_column(Integer, server_default="0")
    documents_extracted: Mapped[int] = mapped_column(Integer, server_default="0")
    documents_failed: Mapped[int] = mapped_column(Integer, server_default="0")
    pages: Mapped[int] = mapped_column(Integer, server_default="0")
    started_at: Mapped[dt.datetime] = created_at_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_jobs_status_started_at", "status", "started_at"),)


class Document(Base):
    """One row per distinct content (sha256); the same bytes under two keys are one document.

    `source_key` uses the "C" collation so a prefix search (`source_key LIKE 'scans/2024/%'`)
    can use its index. `source_bucket`/`source_key` say where the content was last registered from; every object
    location ever seen is in `document_sources`. The claim columns say which job is working on
    the document and until when its claim holds (a crashed job's claim simply runs out).
    """

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    source_bucket: Mapped[str] = mapped_column(Text)
    source_key: Mapped[str] = mapped_column(Text(collation="C"))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    etag: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(Text)
    page_count: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[DocumentStatus] = mapped_column(
        pg_enum(DocumentStatus, "document_status"), server_default=DocumentStatus.NEW.value
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")  # db/attempts.py
    claimed_by_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL")
    )
    claim_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = created_at_column()

    pages: Mapped[list[Page]] = relationship(
        back_populates="document", order_by="Page.page_index", passive_deletes=True
    )

    __table_args__ = (
        CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
        Index("ix_documents_source", "source_bucket", "source_key"),
        # The claim query scans by status; keep that scan short on a large backlog.
        Index("ix_documents_status_id", "status", "id"),
    )


class DocumentSource(Base):
    """Every object (bucket, key, etag) ever registered, and the document its bytes are.

    Discovery asks this table which objects it already knows, so an unchanged object is never
    read again, even when its content is a duplicate of another object's.
    """

    __tablename__ = "document_sources"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    bucket: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text(collation="C"))
    etag: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    first_seen_at: Mapped[dt.datetime] = created_at_column()
    last_seen_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (UniqueConstraint("bucket", "key"),)


# The page's words for full-text search, heading lines weighed 'A' and the whole page 'D', so a
# page with the words in its title ranks above one with them in a footnote (heading lines are
# also in `text`, so they count twice; what makes a line a heading is in flows/page_text.py).
# The 'simple' configuration lower-cases words and nothing else: the documents are in several
# languages (English, German and French invoices, Malay words on Malaysian receipts), and one
# language's stemmer and stop words would mangle the words of the others; names, invoice
# numbers and amounts are searched as printed anyway. The migration that adds the column writes
# the same expression (tests/test_search.py compares them).
SEARCH_VECTOR = (
    "setweight(to_tsvector('simple', coalesce(heading_text, '')), 'A')"
    " || setweight(to_tsvector('simple', coalesce(text, '')), 'D')"
)


class Page(Base):
    """One page of a document: its size, how it was read, and its OCR text.

    `text` is the page's words in reading order, one line of text per line of the page, and
    `heading_text` the lines of it printed large (titles, names); both NULL for pages stored
    before they were kept, until the document is processed again (`docflow run --reprocess`).
    `search_vector` is computed from them by PostgreSQL (GIN-indexed): search with
    `search_vector @@ websearch_to_tsquery('simple', ...)`.
    """

    __tablename__ = "pages"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    page_index: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    has_text_layer: Mapped[bool] = mapped_column(Boolean, server_default="false")
    ocr_engine: Mapped[str | None] = mapped_column(Text)
    word_count: Mapped[int] = mapped_column(Integer, server_default="0")
    text: Mapped[str | None] = mapped_column(Text)
    heading_text: Mapped[str | None] = mapped_column(Text)
    search_vector: Mapped[str] = mapped_column(TSVECTOR, Computed(SEARCH_VECTOR, persisted=True))

    document: Mapped[Document] = relationship(back_populates="pages")

    __table_args__ = (
        UniqueConstraint("document_id", "page_index"),
        Index("ix_pages_search_vector", "search_vector", postgresql_using="gin"),
    )


class ModelVersion(Base):
    """A trained model: where its weights live, what it came from, how it scored."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    uri: Mapped[str] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    preset: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), nullable=False
    )
    status: Mapped[ModelStatus] = mapped_column(
        pg_enum(ModelStatus, "model_status"), server_default=ModelStatus.CANDIDATE.value
    )
    created_at: Mapped[dt.datetime] = created_at_column()
    activated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # At most one active model: a unique index over the rows whose status is 'active'
        # admits exactly one such row, whatever the application code does.
        Index(
            "uq_model_versions_one_active",
            "status",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
    )


class ModelActivation(Base):
    """One change of the active model version: which version became active, which one it
    replaced, how (activate, promote, rollback), who did it, when, and why.

    Append-only. `model_versions.status` says which version is active now; this table says how
    it got there, and `db.model_versions.rollback_target` replays it to find the version to go
    back to.
    """

    __tablename__ = "model_activations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    previous_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    kind: Mapped[ActivationKind] = mapped_column(pg_enum(ActivationKind, "activation_kind"))
    activated_by: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    activated_at: Mapped[dt.datetime] = created_at_column()


class Extraction(Base):
    """The fields one model version extracted from one document.

    UNIQUE(document_id, model_version_id): reprocessing a document with the same model version
    replaces that extraction's fields (and moves `created_at` and `job_id` to the new run)
    instead of adding a second copy, so `fields` never holds two answers from one model for one
    document. Extractions by different model versions live side by side; the views show the
    latest one.
    """

    __tablename__ = "extractions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="RESTRICT")
    )
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    field_count: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[dt.datetime] = created_at_column()

    fields: Mapped[list[Field]] = relationship(
        back_populates="extraction", order_by="Field.id", passive_deletes=True
    )

    __table_args__ = (
        UniqueConstraint("document_id", "model_version_id"),
        Index("ix_extractions_document_id_created_at", "document_id", "created_at"),
        # The review queue's refresh finds the extractions stored since it last ran.
        Index("ix_extractions_created_at", "created_at"),
    )


class Field(Base):
    """One extracted key-value pair: the raw text as generated, and its normalised forms.

    `name` and `value` use the "C" collation (byte order): comparisons in their indexes are a
    memcmp instead of a locale lookup, which makes storing fields markedly cheaper, and a
    prefix search (`value LIKE 'INV-2024%'`) can use the index. Sorting by them is by code
    point, not by a language's rules.

    The box is four integer columns in page pixels (x0, y0, x1, y1), NULL when the answer could
    not be grounded on OCR words; the views present it as an int[4].

    `raw_value` is the text as printed on the page when `value` was rewritten in the style the
    model learned from its labels (upper case: "22 MAR 18" from "22 Mar 18"); NULL when the
    two are the same, so fields no style changed take no extra space (current_fields shows
    the value then).
    """

    __tablename__ = "fields"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    extraction_id: Mapped[int] = mapped_column(
        ForeignKey("extractions.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(Text(collation="C"))
    value: Mapped[str] = mapped_column(Text(collation="C"))
    raw_value: Mapped[str | None] = mapped_column(Text(collation="C"))
    value_num: Mapped[Decimal | None] = mapped_column(Numeric)
    value_date: Mapped[dt.date | None] = mapped_column(Date)
    currency: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    page: Mapped[int | None] = mapped_column(Integer)
    box_x0: Mapped[int | None] = mapped_column(Integer)
    box_y0: Mapped[int | None] = mapped_column(Integer)
    box_x1: Mapped[int | None] = mapped_column(Integer)
    box_y1: Mapped[int | None] = mapped_column(Integer)
    review_status: Mapped[ReviewStatus] = mapped_column(
        pg_enum(ReviewStatus, "review_status"), server_default=ReviewStatus.UNREVIEWED.value
    )

    extraction: Mapped[Extraction] = relationship(back_populates="fields")

    __table_args__ = (
        # Partial: only numeric values are indexed. `value_num > 100` implies NOT NULL, so the
        # planner still uses it, and storing non-numeric fields does not pay for it.
        Index(
            "ix_fields_name_value_num",
            "name",
            "value_num",
            postgresql_where=text("value_num IS NOT NULL"),
        ),
        Index("ix_fields_name_value", "name", "value"),
    )


class Label(Base):
    """A ground-truth value for one field of one document, from an import or a reviewer.

    One value per (document, name, source): storing a label again replaces it. An empty value
    says the field is not on the document (a reviewer's "not on this document").
    """

    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    value: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    # Who gave a label from the review application (source 'review'); NULL for imports.
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("reviewers.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (UniqueConstraint("document_id", "name", "source"),)


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[TrainingKind] = mapped_column(pg_enum(TrainingKind, "training_kind"))
    base_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    result_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    status: Mapped[TrainingStatus] = mapped_column(
        pg_enum(TrainingStatus, "training_status"), server_default=TrainingStatus.RUNNING.value
    )
    parameters: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), nullable=False
    )
    train_size: Mapped[int | None] = mapped_column(Integer)
    holdout_size: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), nullable=False
    )
    # A list of {"step": int, "loss": float, ...} points, in step order.
    loss_curve: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb"), nullable=False
    )
    started_at: Mapped[dt.datetime] = created_at_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)


class ArchiveOutput(Base):
    """One archive file written for a document: its searchable PDF, ALTO or hOCR, where it is,
    and from which OCR. One per (document, kind, OCR engine id): a document's content and its
    OCR decide the file, so a later run with the same engine finds it here and writes nothing.
    """

    __tablename__ = "archive_outputs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    kind: Mapped[ArchiveKind] = mapped_column(pg_enum(ArchiveKind, "archive_kind"))
    ocr_engine: Mapped[str] = mapped_column(Text)
    bucket: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # Of the file's bytes: lets anyone check the object in the bucket is the one recorded.
    content_sha256: Mapped[str] = mapped_column(Text)
    # Searchable PDFs: whether the file passed PDF/A-2b validation; NULL for the other kinds
    # and for a born-digital PDF stored as it came (not ours to judge).
    pdfa: Mapped[bool | None] = mapped_column(Boolean)
    # Why a PDF is not PDF/A, or that a born-digital PDF was kept as it is.
    note: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (UniqueConstraint("document_id", "kind", "ocr_engine"),)


# The review tables share this metadata: importing the schema imports them too. A plain module
# import, so that importing db.models_review first (which imports this module) also works.
import db.models_review  # noqa: E402, F401
