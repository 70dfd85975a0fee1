"""model_activations: every change of the active model version, with who, when and why.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09

`model_versions.status` and `activated_at` say which version is active and since when, but not
who made it so, nor which version it replaced: a rollback has nothing to go back to. This table
is that history (`docflow models activate`, `docflow models rollback`, the finetune flow's
promotions).

Versions activated before this migration get one row each, in the order of their
`activated_at` (the active one last), by 'unknown': only their latest activation was recorded,
so that is the history a rollback can replay for them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_activations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("model_version_id", sa.BigInteger(), nullable=False),
        sa.Column("previous_version_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "kind",
            sa.Enum("activate", "promote", "rollback", name="activation_kind"),
            nullable=False,
        ),
        sa.Column("activated_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "activated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_model_activations_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["previous_version_id"],
            ["model_versions.id"],
            name=op.f("fk_model_activations_previous_version_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_activations")),
    )
    op.create_index(
        op.f("ix_model_activations_model_version_id"),
        "model_activations",
        ["model_version_id"],
        unique=False,
    )
    op.execute(
        """
        INSERT INTO model_activations
            (model_version_id, previous_version_id, kind, activated_by, reason, activated_at)
        SELECT id, lag(id) OVER history, 'activate', 'unknown',
               'activated before the activation history was kept', activated_at
        FROM model_versions
        WHERE activated_at IS NOT NULL
        WINDOW history AS (ORDER BY status = 'active', activated_at, id)
        ORDER BY status = 'active', activated_at, id
        """
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_model_activations_model_version_id"), table_name="model_activations")
    op.drop_table("model_activations")
    # drop_table leaves the enum type behind.
    op.execute("DROP TYPE IF EXISTS activation_kind")
