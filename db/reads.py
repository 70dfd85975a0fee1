"""The reads people run from the command line (`docflow jobs`, `fields`, `export`, `search`):
each returns the column names and the rows, as SQL gives them, for a table or a file, or
(`search_pages`) typed rows. The writes the flows make are in the other modules of `db`
(`documents`, `jobs`, `extractions`, ...); the views these read are in `db/views`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session

Table = tuple[list[str], list[tuple[Any, ...]]]

RECENT_JOBS = text(
    """
    SELECT id, kind, status, started_at::timestamp(0) AS started,
           round(extract(epoch FROM finished_at - started_at)::numeric, 1) AS seconds,
           documents_seen AS documents, documents_extracted AS extracted,
           documents_failed AS failed, pages, left(error, 80) AS error
    FROM jobs ORDER BY id DESC LIMIT :limit
    """
)

CURRENT_FIELDS = text(
    """
    SELECT document_id, source_bucket, source_key, sha256, model_version, extracted_at,
           name, value, value_num, value_date, currency, confidence, page, box, corrected
    FROM current_fields
    WHERE (CAST(:since AS timestamptz) IS NULL OR extracted_at >= CAST(:since AS timestamptz))
    ORDER BY document_id, name
    """
)


def _table(session: Session, statement, **params) -> Table:
    result = session.execute(statement, params)
    return list(result.keys()), [tuple(row) for row in result]


def recent_jobs(session: Session, limit: int = 20) -> Table:
    """The newest jobs first: kind, status, start, seconds, counts, the start of any error."""
    return _table(session, RECENT_JOBS, limit=limit)


def fields_of_document(session: Session, document: str) -> Table:
    """The current fields of the documents `document` names: a document id, a sha256 (or its
    first 8+ hex characters) or an object key."""
    if document.isdigit():
        where, value = "document_id = :v", int(document)
    elif len(document) >= 8 and all(c in "0123456789abcdef" for c in document):
        where, value = "sha256 LIKE :v", f"{document}%"
    else:
        where = "document_id IN (SELECT document_id FROM document_sources WHERE key = :v)"
        value = document
    statement = text(
        "SELECT document_id, source_key, name, value, value_num, value_date, currency, "
        "round(confidence::numeric, 3) AS confidence, page, box "
        f"FROM current_fields WHERE {where} ORDER BY document_id, name"
    )
    return _table(session, statement, v=value)


def current_fields(session: Session, since: datetime | str | None = None) -> Table:
    """Every current field, one row per field, extracted at or after `since` when given."""
    return _table(session, CURRENT_FIELDS, since=since)


def iter_current_fields(
    session: Session, since: datetime | str | None = None, batch_rows: int = 1000
) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """`current_fields` for an export of any size: the column names, and the rows as a
    server-side cursor hands them over, `batch_rows` at a time, so only one batch is ever in
    memory. Read the rows before the session ends."""
    statement = CURRENT_FIELDS.execution_options(yield_per=batch_rows)
    result = session.execute(statement, {"since": since})
    return list(result.keys()), (tuple(row) for row in result)


# ts_headline marks each match between these two control characters (STX and ETX, "start" and
# "end of text"), taken out of the page's text before highlighting, so a caller tells a
# highlight from anything the page says: ts_headline's default "<b>" can be printed on a page.
HIGHLIGHT_START = "\x02"
HIGHLIGHT_STOP = "\x03"
# Up to two fragments of the page around its matches, so a snippet shows more than the first
# match of a long page; ShortWord=0 because by default words of up to 3 letters are cut from a
# fragment's ends, and on a receipt those are amounts, currencies and codes ("12", "EUR").
HEADLINE_OPTIONS = (
    f"StartSel={HIGHLIGHT_START}, StopSel={HIGHLIGHT_STOP}, "
    'MaxFragments=2, MaxWords=12, MinWords=4, ShortWord=0, FragmentDelimiter=" ... "'
)
# In fragments, ts_headline never ends a fragment on a number, so a page's last line
# "TOTAL 12.50" would lose its amount: a word appended to the page (and taken off the snippet,
# highlighted or not) gives the last fragment a word to end on.
PAGE_END = "\ndocflowpageend"
PAGE_END_PATTERN = f"\n{HIGHLIGHT_START}?docflowpageend{HIGHLIGHT_STOP}?$"

# The matching pages ranked in the inner query, through the GIN index on search_vector; the
# snippets (ts_headline parses the page's text again, the costly part) made for the `limit`
# best only. ts_rank weighs heading lines 'A' and the page 'D' (db/models.py), so a page with
# the words in its title comes first. websearch_to_tsquery takes what people type into a search
# box: words (all of them), "a phrase", `or`, and -word to leave pages with it out.
SEARCH_PAGES = text(
    """
    SELECT best.document_id, best.source_bucket, best.source_key, best.page_index, best.rank,
           regexp_replace(
               ts_headline('simple', translate(best.text, :markers, '') || :page_end,
                           websearch_to_tsquery('simple', :query), :options),
               :page_end_pattern, ''
           ) AS snippet
    FROM (
        SELECT document_id, source_bucket, source_key, page_index, coalesce(text, '') AS text,
               ts_rank(search_vector, websearch_to_tsquery('simple', :query)) AS rank
        FROM document_text
        WHERE search_vector @@ websearch_to_tsquery('simple', :query)
        ORDER BY rank DESC, document_id, page_index
        LIMIT :limit
    ) AS best
    ORDER BY best.rank DESC, best.document_id, best.page_index
    """
)


class PageMatch(NamedTuple):
    """A page that matches a search: its document, its index (from 0), how well it matches
    (ts_rank: higher is better) and a snippet of its text around the matches, each match
    between HIGHLIGHT_START and HIGHLIGHT_STOP."""

    document_id: int
    source_bucket: str
    source_key: str
    page_index: int
    rank: float
    snippet: str

    def snippet_parts(self) -> list[tuple[str, bool]]:
        """The snippet as (text, is a match) pieces, in order, without the markers."""
        parts = []
        for i, piece in enumerate(self.snippet.split(HIGHLIGHT_START)):
            if i == 0:
                parts.append((piece, False))
                continue
            match, _, rest = piece.partition(HIGHLIGHT_STOP)
            parts += [(match, True), (rest, False)]
        return [(piece, is_match) for piece, is_match in parts if piece]


def search_pages(session: Session, query: str, limit: int = 20) -> list[PageMatch]:
    """The pages whose text matches `query` (web search syntax, the 'simple' configuration:
    case-insensitive, words as printed), best first, at most `limit`."""
    rows = session.execute(
        SEARCH_PAGES,
        {
            "query": query,
            "limit": limit,
            "markers": HIGHLIGHT_START + HIGHLIGHT_STOP,
            "options": HEADLINE_OPTIONS,
            "page_end": PAGE_END,
            "page_end_pattern": PAGE_END_PATTERN,
        },
    )
    return [PageMatch(*row) for row in rows]


__all__ = ["PageMatch", "current_fields", "fields_of_document", "recent_jobs", "search_pages"]
