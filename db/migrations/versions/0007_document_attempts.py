"""documents.attempts: how many times work on a document began without finishing it for good.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-22

A run counts an attempt when it starts work on a document (`db.jobs.count_attempts`), not when
it claims it: a run may claim hundreds of documents and be killed before it starts most of
them. A failure that no document can be behind (storage or the database unreachable or out
of room) gives the attempt back; a reprocess starts again from zero. A document whose next
attempt would be past `DOCFLOW_MAX_ATTEMPTS` is failed with the last reason instead of claimed
(`db.jobs.give_up_exhausted`), and one with an attempt behind it is worked on alone. Rows
already there start at 0: every waiting document gets its full count of attempts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "documents",
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("documents", "attempts")
