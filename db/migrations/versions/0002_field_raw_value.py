"""fields.raw_value: the text as printed on the page, beside the styled value.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

The extractor writes `value` in the style it learned from the labels (upper case for SROIE:
"22 MAR 18") and keeps what the page says ("22 Mar 18") as the raw value. The column is
nullable and NULL means "the same as value": rows stored before this migration stay correct as
they are, and fields no style changed take no extra space.

current_fields gains raw_value (never NULL there: COALESCE(raw_value, value)) as its last
column, from db/views/current_fields_v2.sql. v1 stays as 0001 reads it, so an empty database
and one already at 0001 both end with v2. Downgrade puts v1 back before dropping the column,
since v2 selects it.
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS_DIR = Path(__file__).resolve().parents[2] / "views"


def upgrade() -> None:
    op.add_column("fields", sa.Column("raw_value", sa.Text(collation="C"), nullable=True))
    # v2 is a CREATE OR REPLACE that only appends a column, which PostgreSQL allows in place:
    # views people built on current_fields keep working instead of blocking the upgrade.
    op.execute((VIEWS_DIR / "current_fields_v2.sql").read_text())


def downgrade() -> None:
    # Replacing cannot remove a column, so v2 is dropped and v1 created again.
    op.execute("DROP VIEW IF EXISTS current_fields")
    op.execute((VIEWS_DIR / "current_fields_v1.sql").read_text())
    op.drop_column("fields", "raw_value")
