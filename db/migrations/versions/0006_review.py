"""review: reviewers, per-field thresholds, leases, the decision trail; views show decisions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20

`review_queue` holds the items waiting for review (`db/review_queue.py` keeps it up to date,
with `review_queue_state`). The review application (`docflow review`) writes a `review_decisions` row for every decision
and a `labels` row (source 'review', with the reviewer) for every accept, correction or "not
on this document". current_fields (v3) and document_fields (v2) show the latest decision's
value in place of the model's; current_fields appends `corrected` and `model_value`. Both are
replaced in place, so views people built on them keep working. Downgrade puts the earlier
views back before dropping the tables they read.
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS_DIR = Path(__file__).resolve().parents[2] / "views"
# Written out here, not imported from db.models: this migration builds the same type forever.
REVIEW_DECISION = postgresql.ENUM("accept", "correct", "absent", "skip", name="review_decision")


def _created_at(name: str) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "reviewers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default="false", nullable=False),
        _created_at("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_reviewers"),
        sa.UniqueConstraint("name", name="uq_reviewers_name"),
    )
    op.create_table(
        "review_thresholds",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=True),
        _created_at("updated_at"),
        sa.CheckConstraint(
            "threshold >= 0 AND threshold <= 1", name="ck_review_thresholds_unit_range"
        ),
        sa.PrimaryKeyConstraint("name", name="pk_review_thresholds"),
    )
    op.create_table(
        "review_leases",
        sa.Column("document_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("reviewer_id", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.Uuid(), nullable=False),
        _created_at("leased_at"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name="fk_review_leases_document_id_documents",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"],
            ["reviewers.id"],
            name="fk_review_leases_reviewer_id_reviewers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("document_id", "name", name="pk_review_leases"),
        sa.UniqueConstraint("token", name="uq_review_leases_token"),
    )
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("document_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(collation="C"), nullable=False),
        sa.Column("field_id", sa.BigInteger(), nullable=True),
        sa.Column("model_version_id", sa.BigInteger(), nullable=True),
        sa.Column("decision", REVIEW_DECISION, nullable=False),
        sa.Column("value", sa.Text(collation="C"), nullable=True),
        sa.Column("value_num", sa.Numeric(), nullable=True),
        sa.Column("value_date", sa.Date(), nullable=True),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("box_x0", sa.Integer(), nullable=True),
        sa.Column("box_y0", sa.Integer(), nullable=True),
        sa.Column("box_x1", sa.Integer(), nullable=True),
        sa.Column("box_y1", sa.Integer(), nullable=True),
        sa.Column("model_value", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("audit", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("reviewer_id", sa.BigInteger(), nullable=True),
        sa.Column("lease_token", sa.Uuid(), nullable=False),
        _created_at("decided_at"),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name="fk_review_decisions_document_id_documents",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["field_id"],
            ["fields.id"],
            name="fk_review_decisions_field_id_fields",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name="fk_review_decisions_model_version_id_model_versions",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"],
            ["reviewers.id"],
            name="fk_review_decisions_reviewer_id_reviewers",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_review_decisions"),
        sa.UniqueConstraint("lease_token", name="uq_review_decisions_lease_token"),
    )
    op.create_index(
        "ix_review_decisions_document_id_name",
        "review_decisions",
        ["document_id", "name", "decided_at"],
    )
    op.create_index("ix_review_decisions_decided_at", "review_decisions", ["decided_at"])
    op.create_table(
        "review_queue",
        sa.Column("document_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("field_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("audit", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name="fk_review_queue_document_id_documents",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["field_id"], ["fields.id"], name="fk_review_queue_field_id_fields", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("document_id", "name", name="pk_review_queue"),
    )
    op.create_index("ix_review_queue_field_id", "review_queue", ["field_id"])
    op.create_index(
        "ix_review_queue_job_id_document_id_name", "review_queue", ["job_id", "document_id", "name"]
    )
    op.create_table(
        "review_queue_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("default_threshold", sa.Float(), nullable=True),
        sa.Column("audit_cutoff", sa.Integer(), nullable=True),
        sa.Column("thresholds_version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("built_thresholds_version", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("id = 1", name="ck_review_queue_state_one_row"),
        sa.PrimaryKeyConstraint("id", name="pk_review_queue_state"),
    )
    op.create_index("ix_extractions_created_at", "extractions", ["created_at"])
    op.add_column("labels", sa.Column("reviewer_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        "fk_labels_reviewer_id_reviewers",
        "labels",
        "reviewers",
        ["reviewer_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.execute((VIEWS_DIR / "current_fields_v3.sql").read_text())
    op.execute((VIEWS_DIR / "document_fields_v2.sql").read_text())


def downgrade() -> None:
    # Replacing cannot remove columns, so v3 is dropped and v2 created again.
    op.execute("DROP VIEW IF EXISTS current_fields")
    op.execute((VIEWS_DIR / "current_fields_v1.sql").read_text())
    op.execute((VIEWS_DIR / "current_fields_v2.sql").read_text())
    op.execute(
        (VIEWS_DIR / "document_fields_v1.sql")
        .read_text()
        .replace("CREATE VIEW", "CREATE OR REPLACE VIEW")
    )
    op.drop_constraint("fk_labels_reviewer_id_reviewers", "labels", type_="foreignkey")
    op.drop_column("labels", "reviewer_id")
    op.drop_index("ix_extractions_created_at", table_name="extractions")
    op.drop_table("review_queue_state")
    op.drop_table("review_queue")
    op.drop_table("review_decisions")
    op.drop_table("review_leases")
    op.drop_table("review_thresholds")
    op.drop_table("reviewers")
    REVIEW_DECISION.drop(op.get_bind(), checkfirst=True)
