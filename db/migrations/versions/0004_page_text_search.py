"""pages.text, pages.heading_text and a GIN-indexed tsvector over them; the document_text view.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-16

Full-text search over every page in SQL. `text` is the page's OCR words in reading order, one
line of text per line of the page; `heading_text` the lines of it printed well above the page's
usual size (flows/page_text.py says how they are found). `search_vector` is a generated column,
so every writer of `pages` gets it right without knowing it exists: the heading lines weigh 'A',
the whole page 'D' (a word in a title ranks above the same word in a footnote), both in the
'simple' configuration because the documents are in several languages (see db/models.py).

Pages stored before this migration have NULL text: their OCR lives in the bucket's OCR cache,
which a migration does not read. `docflow run --reprocess` stores it from the cache (no OCR
runs again). Adding the generated column rewrites `pages`, which holds one small row per page.

document_text (db/views/document_text_v1.sql) shows every page's text beside its document's
key. Downgrade drops the view first, since it selects the columns.
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS_DIR = Path(__file__).resolve().parents[2] / "views"

# Written out here, not imported from db.models: this migration builds the same column forever,
# whatever the model says later.
SEARCH_VECTOR = (
    "setweight(to_tsvector('simple', coalesce(heading_text, '')), 'A')"
    " || setweight(to_tsvector('simple', coalesce(text, '')), 'D')"
)


def upgrade() -> None:
    op.add_column("pages", sa.Column("text", sa.Text(), nullable=True))
    op.add_column("pages", sa.Column("heading_text", sa.Text(), nullable=True))
    op.add_column(
        "pages",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(SEARCH_VECTOR, persisted=True),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_pages_search_vector",
        "pages",
        ["search_vector"],
        unique=False,
        postgresql_using="gin",
    )
    op.execute((VIEWS_DIR / "document_text_v1.sql").read_text())


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS document_text")
    op.drop_index("ix_pages_search_vector", table_name="pages", postgresql_using="gin")
    op.drop_column("pages", "search_vector")
    op.drop_column("pages", "heading_text")
    op.drop_column("pages", "text")
