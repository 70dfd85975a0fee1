"""archive_outputs: the searchable PDF, ALTO and hOCR written for each document.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-17

One row per (document, kind, OCR engine id), with the object's bucket and key, its size and
sha256, and for searchable PDFs whether the file validated as PDF/A-2b (and why not). The
digitize flow writes a document's archive files only where no row exists for its content and
the run's OCR engine, so re-running digitize never rewrites them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here, not imported from db.models: this migration builds the same type forever.
ARCHIVE_KIND = postgresql.ENUM("searchable_pdf", "alto", "hocr", name="archive_kind")


def upgrade() -> None:
    op.create_table(
        "archive_outputs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("document_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", ARCHIVE_KIND, nullable=False),
        sa.Column("ocr_engine", sa.Text(), nullable=False),
        sa.Column("bucket", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_sha256", sa.Text(), nullable=False),
        sa.Column("pdfa", sa.Boolean(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name="fk_archive_outputs_document_id_documents",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_archive_outputs_job_id_jobs", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_archive_outputs"),
        sa.UniqueConstraint(
            "document_id",
            "kind",
            "ocr_engine",
            name="uq_archive_outputs_document_id_kind_ocr_engine",
        ),
    )


def downgrade() -> None:
    op.drop_table("archive_outputs")
    ARCHIVE_KIND.drop(op.get_bind(), checkfirst=True)
