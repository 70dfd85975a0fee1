"""`docflow demo` (what `make run` runs): the main job end to end on the embedded default.

Makes about twenty synthetic scans (seeded, receipts and invoices mixed), puts them into the
inbox under `demo/`, runs `digitize` in this process, then prints the job summary and the
answer of an example query from docs/SQL.md. Running it again uploads the same bytes, finds
nothing new, and prints the summary and the query again.

It ends with what "digitized" gives beyond the fields: a full-text search over the pages
(`docflow search`), and where the best match's searchable PDF is in the archive bucket, with
whether it validated as PDF/A-2b.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flows.settings import Settings

DEMO_PREFIX = "demo/"
DEMO_SEED = 2024
DEMO_KINDS = ("receipt", "invoice")

# A word every sample prints (receipts and invoices both have a total).
DEMO_SEARCH = "total"

# The first example of docs/SQL.md (the tests check that both say the same).
EXAMPLE_QUERY = """\
SELECT company.value AS company,
       day.value_date AS date,
       total.value_num AS total,
       total.currency
FROM current_fields AS total
JOIN current_fields AS company
  ON company.document_id = total.document_id AND company.name = 'company'
LEFT JOIN current_fields AS day
  ON day.document_id = total.document_id AND day.name = 'date'
WHERE total.name = 'total'
ORDER BY total.value_num DESC NULLS LAST
LIMIT 10;"""


def demo_documents(count: int = 20, seed: int = DEMO_SEED, degrade: bool = True) -> list[Any]:
    """`count` synthetic one-page scans, alternately receipts and invoices, the same for the same
    seed (the benchmarks and tests upload these too)."""
    from docformer.synth import render_document

    return [
        render_document(
            DEMO_KINDS[index % len(DEMO_KINDS)], seed=seed, index=index, degrade=degrade
        )
        for index in range(count)
    ]


def upload_documents(
    settings: Settings,
    documents: list[Any],
    prefix: str = "",
    advance: Callable[[], None] = lambda: None,
) -> list[str]:
    """Put synthetic documents into the inbox bucket as `<prefix><name><suffix>`; their keys."""
    from flows.clients import object_store

    store = object_store(settings)
    keys = []
    for document in documents:
        key = f"{prefix}{document.name}{document.suffix}"
        store.put_bytes(settings.inbox_bucket, key, document.encode())
        keys.append(key)
        advance()
    return keys


def run_example_query(
    settings: Settings, sql: str = EXAMPLE_QUERY
) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of `sql` on the docflow database."""
    import sqlalchemy as sa

    engine = sa.create_engine(settings.database_url.get_secret_value())
    try:
        with engine.connect() as connection:
            result = connection.execute(sa.text(sql))
            return list(result.keys()), [tuple(row) for row in result]
    finally:
        engine.dispose()


def best_match_archive(
    settings: Settings, query: str = DEMO_SEARCH
) -> tuple[str, str, bool | None] | None:
    """(source key, `s3://bucket/key` of its searchable PDF, whether it is PDF/A-2b: None for a
    born-digital PDF kept as it came) of the document whose page matches `query` best; None
    when nothing matches or nothing is archived."""
    import sqlalchemy as sa

    from db.models import ArchiveKind, ArchiveOutput
    from db.reads import search_pages
    from flows.clients import sessions

    with sessions(settings)() as session:
        for match in search_pages(session, query, limit=20):
            archived = session.scalars(
                sa.select(ArchiveOutput)
                .where(
                    ArchiveOutput.document_id == match.document_id,
                    ArchiveOutput.kind == ArchiveKind.SEARCHABLE_PDF,
                )
                .order_by(ArchiveOutput.created_at.desc())
                .limit(1)
            ).first()
            if archived is not None:
                return (
                    match.source_key,
                    f"s3://{archived.bucket}/{archived.key}",
                    archived.pdfa,
                )
    return None


def archive_line(settings: Settings, query: str = DEMO_SEARCH) -> str:
    """What the demo prints last: where the best match's searchable PDF is, and whether it is
    PDF/A-2b."""
    found = best_match_archive(settings, query)
    if found is None:
        return (
            "No searchable PDF archived yet: `docflow run` writes them (documents digitized "
            "before the archive existed get theirs with `docflow run --reprocess`)."
        )
    source_key, location, pdfa = found
    kind = {True: "PDF/A-2b", False: "not PDF/A", None: "born-digital, as it came"}[pdfa]
    return f"The searchable PDF of {source_key} ({kind}):\n  {location}"
