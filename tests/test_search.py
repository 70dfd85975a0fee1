"""Full-text search over the pages' OCR text: what a page row carries (`flows.page_text`), what
PostgreSQL stores and indexes (`pages.text`, `heading_text`, `search_vector`, the
`document_text` view), the migration that adds them, `db.reads.search_pages` and
`docflow search`. Pages are built from hand-made OCR results and stored directly: no flow runs,
so these stay fast."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from db import migrate
from db.documents import DocumentObject, register_documents
from db.extractions import store_extraction
from db.model_versions import model_version_by_name, register_model_version
from db.models import Page
from db.reads import HIGHLIGHT_START, HIGHLIGHT_STOP, search_pages
from db.session import make_engine
from docformer.document import OCRResult, Word
from flows.page_text import page_text

BODY = 20  # line height of body text, in page pixels
PAGE_COLUMNS = {"text", "heading_text", "search_vector"}


def line(words: str, line_id: int, height: float = BODY, top: float | None = None) -> list[Word]:
    """The words of one printed line, `height` pixels tall, left to right."""
    top = 40.0 * line_id if top is None else top
    return [
        Word(text, (10.0 + 60 * i, top, 60.0 + 60 * i, top + height), 1.0, line_id)
        for i, text in enumerate(words.split())
    ]


def ocr(*lines: list[Word]) -> OCRResult:
    return OCRResult(800, 1000, [word for words in lines for word in words], "test-ocr")


def page(index: int, result: OCRResult) -> dict:
    """A page row as the digitize flow builds it (flows.tasks.page_row) for `result`."""
    text, heading_text = page_text(result)
    return {
        "page_index": index,
        "width": result.width,
        "height": result.height,
        "ocr_engine": result.engine,
        "word_count": len(result.words),
        "text": text,
        "heading_text": heading_text,
    }


def store_document(session: Session, key: str, *pages: OCRResult) -> int:
    """A document under `key` with these pages, stored as an extraction with no fields."""
    sha256 = hashlib.sha256(key.encode()).hexdigest()
    [document] = register_documents(
        session, [DocumentObject("inbox", key, sha256, 10, "application/pdf")]
    )
    version = model_version_by_name(session, "v1")
    version_id = version.id if version else register_model_version(session, "v1", "file:///m/v1")
    store_extraction(
        session, document.id, version_id, None, [], pages=[page(i, p) for i, p in enumerate(pages)]
    )
    session.commit()
    return document.id


# ---------------------------------------------------------------------------------------------
# the text of a page


def test_page_text_keeps_the_lines_and_finds_the_headings():
    result = ocr(
        line("Annual Report", 0, height=2 * BODY),
        line("Sales grew in every region", 1),
        line("Costs stayed flat", 2, height=BODY + 4),  # capitals and descenders: not a heading
        line("1 Figures unaudited", 3, height=BODY / 2),
    )
    assert page_text(result) == (
        "Annual Report\nSales grew in every region\nCosts stayed flat\n1 Figures unaudited",
        "Annual Report",
    )


def test_page_text_groups_words_by_line_id_in_reading_order():
    # Two columns read one after the other: a line's words need not be next to each other in
    # the list, and lines are ordered by line_id.
    words = [*line("left one", 0), *line("right one", 2), *line("left two", 1)]
    assert page_text(OCRResult(800, 1000, words)) == ("left one\nleft two\nright one", "")


def test_a_page_of_one_size_has_no_heading_and_an_empty_page_no_text():
    assert page_text(ocr(line("only line", 0, height=50))) == ("only line", "")
    assert page_text(ocr(line("a b", 0), line("c d", 1))) == ("a b\nc d", "")
    assert page_text(OCRResult(800, 1000, [])) == ("", "")


def test_one_tall_word_does_not_make_a_heading():
    tall = line("(bracketed)", 0, height=2 * BODY)
    result = ocr([*tall, *line("text of the line", 0)[1:]], line("next line", 1))
    assert page_text(result)[1] == ""


def test_the_flow_page_row_carries_the_text():
    from flows.tasks import page_row

    result = ocr(line("Invoice", 0, height=2 * BODY), line("Total 12.50", 1))
    row = page_row(3, result, has_text_layer=False)
    assert (row["page_index"], row["word_count"]) == (3, 3)
    assert (row["text"], row["heading_text"]) == ("Invoice\nTotal 12.50", "Invoice")


# ---------------------------------------------------------------------------------------------
# what PostgreSQL stores


def test_text_heading_and_tsvector_are_stored_and_shown_in_document_text(session: Session):
    doc = store_document(
        session,
        "scans/report.pdf",
        ocr(line("Quarterly Report", 0, height=2 * BODY), line("Revenue rose", 1)),
        ocr(line("Appendix", 0)),
    )
    pages = session.scalars(sa.select(Page).order_by(Page.page_index)).all()
    assert [(p.text, p.heading_text) for p in pages] == [
        ("Quarterly Report\nRevenue rose", "Quarterly Report"),
        ("Appendix", ""),
    ]
    vector = session.execute(
        sa.text("SELECT search_vector::text FROM pages WHERE page_index = 0")
    ).scalar_one()
    # The heading's words weigh A (and count again, as D, in the page's text).
    assert vector == "'quarterly':1A,3 'report':2A,4 'revenue':5 'rose':6"

    rows = session.execute(
        sa.text(
            "SELECT document_id, source_bucket, source_key, page_index, text, heading_text"
            " FROM document_text ORDER BY page_index"
        )
    ).all()
    assert rows == [
        (doc, "inbox", "scans/report.pdf", 0, "Quarterly Report\nRevenue rose", "Quarterly Report"),
        (doc, "inbox", "scans/report.pdf", 1, "Appendix", ""),
    ]

    # Storing the pages again (a reprocess) replaces their text.
    store_document(session, "scans/report.pdf", ocr(line("Corrected", 0)))
    assert session.scalars(sa.select(Page.text).order_by(Page.page_index)).all() == [
        "Corrected",
        "Appendix",
    ]


def test_nul_in_page_text_is_dropped(session: Session):
    store_document(session, "scans/nul.pdf", ocr(line("null\x00byte", 0)))
    assert session.scalar(sa.select(Page.text)) == "nullbyte"


def test_the_search_uses_the_gin_index(session: Session):
    store_document(session, "scans/a.pdf", ocr(line("anything", 0)))
    session.execute(sa.text("SET LOCAL enable_seqscan = off"))  # a tiny table: force the choice
    plan = session.execute(
        sa.text(
            "EXPLAIN SELECT * FROM document_text"
            " WHERE search_vector @@ websearch_to_tsquery('simple', 'anything')"
        )
    ).scalars()
    assert "ix_pages_search_vector" in "\n".join(plan)


# ---------------------------------------------------------------------------------------------
# searching


def test_search_finds_a_word_on_page_3_of_a_document(session: Session):
    store_document(session, "scans/other.pdf", ocr(line("Nothing to see", 0)))
    doc = store_document(
        session,
        "scans/contract.pdf",
        ocr(line("Contract", 0, height=2 * BODY), line("between the parties", 1)),
        ocr(line("Terms of payment", 0)),
        ocr(line("The lessee pays a Kaution of 900 EUR", 0), line("signed", 1)),
    )
    [match] = search_pages(session, "kaution")
    assert (match.document_id, match.source_key, match.page_index) == (
        doc,
        "scans/contract.pdf",
        2,
    )
    assert match.rank > 0
    assert f"{HIGHLIGHT_START}Kaution{HIGHLIGHT_STOP}" in match.snippet
    assert ("Kaution", True) in match.snippet_parts()
    snippet = "".join(piece for piece, _ in match.snippet_parts())
    assert snippet == "The lessee pays a Kaution of 900 EUR\nsigned"

    # Web search syntax: a phrase, all words, alternatives, exclusion.
    assert [m.page_index for m in search_pages(session, '"terms of payment"')] == [1]
    assert [m.page_index for m in search_pages(session, "lessee signed")] == [2]
    assert search_pages(session, '"signed lessee"') == []
    both = search_pages(session, "contract or terms")
    assert [m.page_index for m in both] == [0, 1]  # the heading's match first
    assert [m.page_index for m in search_pages(session, "contract -parties")] == []
    assert search_pages(session, "absent") == []
    assert search_pages(session, "!!!") == []  # no word at all: nothing, not an error
    assert len(search_pages(session, "the", limit=1)) == 1


def test_a_word_in_a_heading_ranks_above_the_same_word_in_a_footnote(session: Session):
    # The footnote document is stored first, so an order by id would put it first.
    footnote = store_document(
        session,
        "scans/a-footnote.pdf",
        ocr(
            line("Minutes of the meeting", 0),
            line("Members discussed the budget", 1),
            line("1 See the audit of 2024", 2, height=BODY / 2),
        ),
    )
    heading = store_document(
        session,
        "scans/b-heading.pdf",
        ocr(
            line("Audit", 0, height=2 * BODY),
            line("Members discussed the budget", 1),
            line("and approved the accounts", 2),
        ),
    )
    matches = search_pages(session, "audit")
    assert [m.document_id for m in matches] == [heading, footnote]
    assert matches[0].rank > matches[1].rank


def test_the_page_text_never_becomes_the_snippet_markers(session: Session):
    store_document(session, "scans/x.pdf", ocr(line("odd \x02marker\x03 total", 0)))
    [match] = search_pages(session, "total")
    assert match.snippet_parts() == [("odd marker ", False), ("total", True)]


def test_the_snippet_keeps_the_amount_on_the_last_line(session: Session):
    store_document(session, "scans/y.pdf", ocr(line("Corner Shop", 0), line("TOTAL 12.50", 1)))
    [match] = search_pages(session, "total")
    assert match.snippet == f"Corner Shop\n{HIGHLIGHT_START}TOTAL{HIGHLIGHT_STOP} 12.50"


# ---------------------------------------------------------------------------------------------
# the schema


def test_the_migration_adds_and_removes_the_text_columns(empty_database_url: str):
    """A database at 0003 with a page: 0004 adds the columns (NULL text, an empty vector), the
    index and the view; downgrading removes them and keeps the page."""
    migrate.upgrade(empty_database_url, "0003")
    engine = make_engine(empty_database_url)
    with Session(engine) as session:
        [document] = register_documents(
            session, [DocumentObject("inbox", "old.pdf", "b" * 64, 10, "application/pdf")]
        )
        session.execute(
            sa.text(
                "INSERT INTO pages (document_id, page_index, width, height) VALUES (:d, 0, 10, 10)"
            ),
            {"d": document.id},
        )
        session.commit()

    def schema(connection: sa.Connection) -> tuple[set[str], set[str], set[str]]:
        inspector = sa.inspect(connection)
        return (
            {column["name"] for column in inspector.get_columns("pages")} & PAGE_COLUMNS,
            {index["name"] for index in inspector.get_indexes("pages")},
            set(inspector.get_view_names()),
        )

    migrate.upgrade(empty_database_url)
    with engine.connect() as connection:
        columns, indexes, views = schema(connection)
        assert columns == PAGE_COLUMNS
        assert "ix_pages_search_vector" in indexes and "document_text" in views
        old = connection.execute(
            sa.text("SELECT text, search_vector::text FROM document_text")
        ).one()
        assert tuple(old) == (None, "")
        connection.execute(sa.text("UPDATE pages SET text = 'Stored later'"))
        found = connection.execute(
            sa.text(
                "SELECT source_key FROM document_text"
                " WHERE search_vector @@ websearch_to_tsquery('simple', 'later')"
            )
        ).scalars()
        assert list(found) == ["old.pdf"]
        connection.rollback()

    migrate.downgrade(empty_database_url, "0003")
    with engine.connect() as connection:
        columns, indexes, views = schema(connection)
        assert columns == set() and "ix_pages_search_vector" not in indexes
        assert "document_text" not in views
        assert connection.execute(sa.text("SELECT count(*) FROM pages")).scalar() == 1
    migrate.upgrade(empty_database_url)
    assert migrate.current(empty_database_url) == migrate.head()
    engine.dispose()


def test_the_model_and_the_migration_compute_the_same_vector(database_url: str):
    """Autogenerate cannot compare generated expressions, so this does: the model's column is
    added beside the migration's and PostgreSQL's normalised expressions of both compared."""
    from sqlalchemy.schema import CreateColumn

    engine = make_engine(database_url)
    column = Page.__table__.c.search_vector
    ddl = str(CreateColumn(column).compile(dialect=engine.dialect))
    assert ddl.startswith("search_vector TSVECTOR GENERATED ALWAYS AS")
    with engine.connect() as connection:
        connection.execute(sa.text(f"ALTER TABLE pages ADD COLUMN model_{ddl}"))
        expressions = connection.execute(
            sa.text(
                "SELECT column_name, generation_expression FROM information_schema.columns"
                " WHERE table_name = 'pages' AND is_generated = 'ALWAYS'"
            )
        ).all()
        connection.rollback()
    engine.dispose()
    by_name = dict(expressions)
    assert set(by_name) == {"search_vector", "model_search_vector"}
    assert by_name["search_vector"] == by_name["model_search_vector"]


# ---------------------------------------------------------------------------------------------
# docflow search


@pytest.fixture
def cli_database(monkeypatch, database_url: str, tmp_path) -> str:
    """`docflow` pointed at the migrated test database (no bucket or Prefect is needed)."""
    from flows.settings import get_settings

    monkeypatch.setenv("DOCFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("DOCFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")  # rich tables: room for every column
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def test_docflow_search_prints_the_matches(cli_database: str, session: Session, capsys):
    from flows.cli import build_parser, main

    build_parser().parse_args(["search", "total", "--limit", "5"])
    store_document(
        session,
        "scans/[red]receipt[/red].pdf",
        ocr(line("Corner Shop", 0, height=2 * BODY), line("[bold]GRAND TOTAL[/bold] 12.50", 1)),
        ocr(line("Thank you", 0)),
    )
    assert main(["search", "grand total"]) == 0
    out = capsys.readouterr().out
    # Database text is shown as it is, never read as Rich markup.
    assert "scans/[red]receipt[/red].pdf" in out
    assert "Corner Shop · [bold]GRAND TOTAL[/bold] 12.50" in out
    for column in ("rank", "document_id", "source_key", "page_index", "snippet"):
        assert column in out

    assert main(["search", "absent"]) == 1
    assert "no page matches 'absent'" in capsys.readouterr().err
    assert main(["search", "total", "--limit", "0"]) == 1
    assert "--limit must be at least 1" in capsys.readouterr().err
