"""The database layer against a real PostgreSQL 15: migrations, every query function, concurrent
claiming, and the views analysts query."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
import threading
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import extractions, migrate
from db.documents import DocumentObject, document_status_counts, known_objects, register_documents
from db.extractions import ExtractionRecord, store_extraction, store_extractions
from db.jobs import (
    add_job_counts,
    claim_documents,
    close_job,
    mark_crashed_jobs,
    mark_document_failed,
    open_job,
    release_claim,
)
from db.labels import labelled_documents, store_labels
from db.model_versions import (
    activate_model_version,
    active_model_version,
    model_version_by_name,
    register_model_version,
)
from db.models import (
    Base,
    Document,
    DocumentStatus,
    Extraction,
    Field,
    Job,
    JobStatus,
    ModelStatus,
    ModelVersion,
    Page,
    TrainingRun,
)
from db.session import make_engine, make_session_factory, session_scope
from db.training_runs import finish_training_run, start_training_run

TABLES = {
    "documents",
    "document_sources",
    "pages",
    "jobs",
    "extractions",
    "fields",
    "labels",
    "model_versions",
    "training_runs",
}
VIEWS = {"current_fields", "document_fields", "document_text"}


def sha(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def obj(n: int, bucket: str = "inbox", key: str | None = None, etag: str | None = None):
    return DocumentObject(
        bucket=bucket,
        key=key or f"scans/{n:05d}.pdf",
        sha256=sha(n),
        size=1000 + n,
        media_type="application/pdf",
        etag=etag or f"etag-{n}",
    )


def add_documents(session: Session, count: int) -> list[int]:
    return [r.id for r in register_documents(session, [obj(i) for i in range(count)])]


def public_objects(connection: sa.Connection) -> dict[str, set[str]]:
    tables = connection.execute(
        sa.text(
            "SELECT table_name, table_type FROM information_schema.tables"
            " WHERE table_schema = 'public'"
        )
    ).all()
    types = connection.execute(
        sa.text(
            "SELECT typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE n.nspname = 'public' AND t.typtype = 'e'"
        )
    ).scalars()
    return {
        "tables": {name for name, kind in tables if kind == "BASE TABLE"},
        "views": {name for name, kind in tables if kind == "VIEW"},
        "enums": set(types),
    }


# ---------------------------------------------------------------------------------------------
# migrations


def test_migrations_up_down_up(empty_database_url: str):
    assert migrate.current(empty_database_url) is None
    migrate.upgrade(empty_database_url)
    assert migrate.current(empty_database_url) == migrate.head()

    engine = sa.create_engine(empty_database_url)
    with engine.connect() as connection:
        found = public_objects(connection)
        assert found["tables"] >= TABLES
        assert found["views"] == VIEWS
        assert "document_status" in found["enums"]
        # The migration builds exactly what the models describe (types, indexes, defaults).
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []

    migrate.downgrade(empty_database_url)
    assert migrate.current(empty_database_url) is None
    with engine.connect() as connection:
        found = public_objects(connection)
        assert found["tables"] <= {"alembic_version"}
        assert found["views"] == set()
        assert found["enums"] == set()

    migrate.upgrade(empty_database_url)
    assert migrate.current(empty_database_url) == migrate.head()
    engine.dispose()


def test_raw_value_migration_keeps_rows_stored_before_it(empty_database_url: str):
    """A database at 0001 with fields in it: 0002 adds fields.raw_value (NULL for the old rows)
    and current_fields shows their value as raw_value; downgrading to 0001 restores the v1
    view and drops the column, and the stored fields survive both ways."""
    migrate.upgrade(empty_database_url, "0001")
    engine = make_engine(empty_database_url)
    with Session(engine) as session:
        doc_id = add_documents(session, 1)[0]
        version = register_model_version(session, "v1", "file:///m/v1")
        # Plain SQL: the query functions already write raw_value, which 0001 does not have.
        extraction_id = session.execute(
            sa.text(
                "INSERT INTO extractions (document_id, model_version_id) VALUES (:d, :v)"
                " RETURNING id"
            ),
            {"d": doc_id, "v": version},
        ).scalar_one()
        session.execute(
            sa.text("INSERT INTO fields (extraction_id, name, value) VALUES (:e, 'date', :value)"),
            {"e": extraction_id, "value": "22 Mar 18"},
        )
        session.commit()

    def view_columns(connection: sa.Connection) -> list[str]:
        return list(
            connection.execute(
                sa.text(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'current_fields' ORDER BY ordinal_position"
                )
            ).scalars()
        )

    with engine.connect() as connection:
        v1_columns = view_columns(connection)
    assert "raw_value" not in v1_columns

    migrate.upgrade(empty_database_url)
    assert migrate.current(empty_database_url) == migrate.head()
    with engine.connect() as connection:
        # Appended: every v1 column keeps its position (0006 appends the review columns).
        assert view_columns(connection) == [*v1_columns, "raw_value", "corrected", "model_value"]
        assert connection.execute(sa.text("SELECT raw_value FROM fields")).all() == [(None,)]
        shown = connection.execute(sa.text("SELECT value, raw_value FROM current_fields")).all()
        assert shown == [("22 Mar 18", "22 Mar 18")]

    migrate.downgrade(empty_database_url, "0001")
    assert migrate.current(empty_database_url) == "0001"
    with engine.connect() as connection:
        assert view_columns(connection) == v1_columns
        columns = sa.inspect(connection).get_columns("fields")
        assert "raw_value" not in {column["name"] for column in columns}
        assert connection.execute(sa.text("SELECT value FROM current_fields")).all() == [
            ("22 Mar 18",)
        ]
    engine.dispose()
    migrate.downgrade(empty_database_url)
    assert migrate.current(empty_database_url) is None


def test_concurrent_upgrades_wait_for_each_other(empty_database_url: str):
    """Two workers starting on a fresh database at once: both succeed and the schema is built
    once (the second waits on the migration lock, then finds nothing to do)."""
    code = "import sys; from db import migrate; migrate.upgrade(sys.argv[1])"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, empty_database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr
    assert migrate.current(empty_database_url) == migrate.head()


def test_alembic_command_line_takes_the_url_from_the_caller(empty_database_url: str):
    ini = Path(migrate.__file__).parent / "alembic.ini"
    alembic = Path(sys.executable).parent / "alembic"
    subprocess.run(
        [
            str(alembic),
            "-c",
            str(ini),
            "-x",
            f"database_url={empty_database_url}",
            "upgrade",
            "head",
        ],
        check=True,
        capture_output=True,
    )
    assert migrate.current(empty_database_url) == migrate.head()


# ---------------------------------------------------------------------------------------------
# documents


def test_register_documents_is_idempotent_by_content(session: Session):
    first = register_documents(session, [obj(1), obj(2)])
    assert [r.is_new for r in first] == [True, True]

    # Same objects again, plus a copy of document 1's bytes under another key.
    copy = obj(1, key="copies/one.pdf", etag="etag-copy")
    again = register_documents(session, [obj(1), obj(2), copy, obj(3)])
    assert [r.is_new for r in again] == [False, False, False, True]
    assert again[0].id == again[2].id == first[0].id
    assert again[1].id == first[1].id
    assert session.scalar(sa.select(sa.func.count()).select_from(Document)) == 3

    # The document's source moved to where its content was last registered from.
    doc = session.get(Document, first[0].id)
    assert (doc.source_key, doc.etag, doc.status) == ("copies/one.pdf", "etag-copy", "new")

    # Same content twice in one batch: one new document, reported new once.
    twins = register_documents(session, [obj(9, key="a"), obj(9, key="b")])
    assert twins[0].id == twins[1].id
    assert [r.is_new for r in twins] == [True, False]
    assert register_documents(session, []) == []

    # Plain mappings work as well as DocumentObject.
    mapping = {
        "bucket": "inbox",
        "key": "m.png",
        "sha256": sha("m"),
        "size": 3,
        "media_type": "image/png",
    }
    assert register_documents(session, [mapping])[0].is_new


def test_known_objects_skip_unchanged_objects_only(session: Session):
    register_documents(session, [obj(1, key="a"), obj(2, key="b"), obj(1, key="dup", etag="e-dup")])
    known = known_objects(
        session,
        "inbox",
        {"a": "etag-1", "b": "changed", "dup": "e-dup", "new": "x", "no-etag": None},
    )
    assert known == {"a", "dup"}
    assert known_objects(session, "other-bucket", {"a": "etag-1"}) == set()

    # An overwritten object is registered with its new content; the old etag is forgotten.
    register_documents(session, [obj(5, key="b", etag="changed")])
    assert known_objects(session, "inbox", {"b": "changed"}) == {"b"}


def test_document_status_counts(session: Session):
    add_documents(session, 3)
    counts = document_status_counts(session)
    assert counts == {"new": 3, "queued": 0, "processing": 0, "extracted": 0, "failed": 0}


# ---------------------------------------------------------------------------------------------
# jobs


def test_jobs_open_count_close(session: Session):
    run_id = uuid.uuid4()
    job_id = open_job(session, "digitize", str(run_id), {"limit": 10, "since": dt.date(2026, 1, 2)})
    add_job_counts(session, job_id, documents_seen=5, pages=7)
    add_job_counts(session, job_id, documents_extracted=4, documents_failed=1, pages=3)
    close_job(session, job_id, "completed", documents_seen=6)
    session.expire_all()
    job = session.get(Job, job_id)
    assert job.flow_run_id == run_id
    assert job.parameters == {"limit": 10, "since": "2026-01-02"}
    assert (job.status, job.documents_seen, job.documents_extracted) == ("completed", 6, 4)
    assert (job.documents_failed, job.pages, job.error) == (1, 10, None)
    assert job.finished_at is not None

    with pytest.raises(ValueError):
        close_job(session, job_id, "running")
    with pytest.raises(LookupError):
        close_job(session, 10**9, "failed", error="x")


def test_closing_or_crashing_a_job_releases_its_claims(session: Session):
    add_documents(session, 6)
    finished = open_job(session, "digitize")
    crashed = open_job(session, "digitize", uuid.uuid4())
    stale = open_job(session, "finetune")
    claim_documents(session, finished, limit=2, ttl_seconds=3600)
    claim_documents(session, crashed, limit=2, ttl_seconds=3600)
    claim_documents(session, stale, limit=2, ttl_seconds=3600)

    close_job(session, finished, "failed", error="boom")
    crashed_run = session.get(Job, crashed).flow_run_id
    assert mark_crashed_jobs(session, flow_run_ids=[crashed_run], error="killed") == [crashed]
    assert mark_crashed_jobs(session, running_longer_than_seconds=3600) == []
    assert mark_crashed_jobs(session, running_longer_than_seconds=-1) == [stale]
    with pytest.raises(ValueError):
        mark_crashed_jobs(session)

    session.expire_all()
    assert session.get(Job, crashed).status == JobStatus.CRASHED
    assert session.get(Job, crashed).error == "killed"
    docs = session.scalars(sa.select(Document)).all()
    assert {d.status for d in docs} == {DocumentStatus.QUEUED}
    assert {d.claimed_by_job_id for d in docs} == {None}
    assert sum(d.last_error == "job crashed: killed" for d in docs) == 2


# ---------------------------------------------------------------------------------------------
# claiming


def test_two_concurrent_claimers_never_share_a_document(engine):
    """Two workers, each with its own connection, claim from one pool of 200 documents in
    small batches at the same time. Every document is claimed exactly once."""
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        all_ids = set(add_documents(session, 200))
        jobs = [open_job(session, "digitize") for _ in range(2)]

    start = threading.Barrier(2)
    claimed: dict[int, list[int]] = {job: [] for job in jobs}
    errors: list[BaseException] = []

    def worker(job_id: int):
        try:
            start.wait()
            while True:
                with session_scope(factory) as session:
                    batch = claim_documents(session, job_id, limit=7, ttl_seconds=600)
                    # Hold the locks a moment, so the other claimer meets locked rows.
                    session.execute(sa.text("SELECT pg_sleep(0.005)"))
                if not batch:
                    return
                claimed[job_id].extend(doc.id for doc in batch)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    first, second = (set(claimed[job]) for job in jobs)
    assert len(first) == len(claimed[jobs[0]]) and len(second) == len(claimed[jobs[1]])
    assert first.isdisjoint(second)
    assert first | second == all_ids
    assert first and second, "both workers should have claimed something"
    with session_scope(factory) as session:
        owners = dict(session.execute(sa.select(Document.id, Document.claimed_by_job_id)).all())
    assert all(owners[doc] == jobs[0] for doc in first)
    assert all(owners[doc] == jobs[1] for doc in second)


def test_expired_claim_becomes_claimable(session: Session):
    add_documents(session, 3)
    crashed = open_job(session, "digitize")
    survivor = open_job(session, "digitize")
    held = claim_documents(session, crashed, limit=10, ttl_seconds=3600)
    expired = claim_documents(session, survivor, limit=10, ttl_seconds=0)
    assert len(held) == 3 and expired == []
    session.commit()

    # The crashed job's claims run out (ttl 0 puts the expiry at its transaction's start).
    session.execute(
        sa.update(Document).values(claim_expires_at=sa.func.now() - dt.timedelta(seconds=1))
    )
    session.commit()
    taken = claim_documents(session, survivor, limit=10, ttl_seconds=3600)
    assert sorted(d.id for d in taken) == sorted(d.id for d in held)
    assert taken[0].bucket == "inbox" and taken[0].sha256 == sha(0)

    # The crashed job coming back cannot touch documents that are no longer its own.
    assert mark_document_failed(session, taken[0].id, crashed, "late") is False
    assert release_claim(session, taken[0].id, crashed) is False
    assert session.get(Document, taken[0].id).status == DocumentStatus.PROCESSING


def test_claim_with_zero_ttl_expires_in_the_next_transaction(session: Session):
    add_documents(session, 2)
    first = open_job(session, "digitize")
    second = open_job(session, "digitize")
    assert len(claim_documents(session, first, limit=5, ttl_seconds=0)) == 2
    session.commit()
    assert len(claim_documents(session, second, limit=5, ttl_seconds=60)) == 2


def test_claim_respects_status_ids_and_reprocess(session: Session):
    ids = add_documents(session, 5)
    version = register_model_version(session, "v1", "file:///m/v1")
    job = open_job(session, "digitize")

    only = claim_documents(session, job, limit=10, ttl_seconds=60, document_ids=ids[:2])
    assert [d.id for d in only] == ids[:2]
    mark_document_failed(session, ids[0], job, "unreadable PDF")
    store_extraction(session, ids[1], version, job, [{"name": "total", "value": "1"}])

    rest = claim_documents(session, job, limit=10, ttl_seconds=60)
    assert [d.id for d in rest] == ids[2:]
    assert release_claim(session, ids[2], job, reason="storage timeout") is True
    doc = session.get(Document, ids[2])
    assert (doc.status, doc.last_error, doc.claimed_by_job_id) == (
        "queued",
        "storage timeout",
        None,
    )

    # Failed and extracted documents come back only when reprocessing is asked for.
    again = claim_documents(session, job, limit=10, ttl_seconds=60)
    assert [d.id for d in again] == [ids[2]]
    assert claim_documents(session, job, limit=10, ttl_seconds=60) == []
    redo = claim_documents(session, job, limit=10, ttl_seconds=60, reprocess=True)
    assert [d.id for d in redo] == ids[:2]
    assert claim_documents(session, job, limit=0, ttl_seconds=60) == []

    failed = session.get(Document, ids[0])
    session.refresh(failed)
    assert failed.last_error == "unreadable PDF"


# ---------------------------------------------------------------------------------------------
# extractions


def test_store_extraction_replaces_instead_of_duplicating(session: Session):
    doc_id = add_documents(session, 1)[0]
    version = register_model_version(session, "v1", "file:///m/v1")
    first_job = open_job(session, "digitize")
    claim_documents(session, first_job, limit=1, ttl_seconds=60)
    first = store_extraction(
        session,
        doc_id,
        version,
        first_job,
        [
            {"name": "total", "value": "12.50", "value_num": Decimal("12.50")},
            {"name": "date", "value": "01/02/2026", "value_date": dt.date(2026, 2, 1)},
        ],
        pages=[{"page_index": 0, "width": 1240, "height": 1754, "word_count": 210}],
    )
    session.commit()
    doc = session.get(Document, doc_id)
    assert (doc.status, doc.claimed_by_job_id, doc.claim_expires_at) == ("extracted", None, None)
    assert doc.page_count == 1

    second_job = open_job(session, "digitize")
    second = store_extraction(
        session,
        doc_id,
        version,
        second_job,
        [{"name": "total", "value": "13.00", "value_num": 13, "confidence": 0.75}],
        pages=[
            {"page_index": 0, "width": 1240, "height": 1754, "has_text_layer": True},
            {"page_index": 1, "width": 1240, "height": 1754, "ocr_engine": "paddleocr"},
        ],
    )
    session.commit()
    assert second == first
    extractions = session.scalars(sa.select(Extraction)).all()
    assert len(extractions) == 1
    assert (extractions[0].job_id, extractions[0].field_count) == (second_job, 1)
    fields = session.scalars(sa.select(Field)).all()
    assert [(f.name, f.value, f.value_num, f.confidence) for f in fields] == [
        ("total", "13.00", Decimal("13"), 0.75)
    ]
    pages = session.scalars(sa.select(Page).order_by(Page.page_index)).all()
    assert [(p.page_index, p.has_text_layer, p.ocr_engine) for p in pages] == [
        (0, True, None),
        (1, False, "paddleocr"),
    ]
    session.refresh(doc)
    assert doc.page_count == 2

    # Another model version keeps its own extraction next to the first.
    other = register_model_version(session, "v2", "file:///m/v2")
    assert store_extraction(session, doc_id, other, None, []) != first
    assert session.scalar(sa.select(sa.func.count()).select_from(Extraction)) == 2


def test_field_values_are_stored_verbatim(session: Session):
    doc_id = add_documents(session, 1)[0]
    version = register_model_version(session, "v1", "file:///m/v1")
    hostile = [
        "'); DROP TABLE fields;--",
        'quote " and \\ backslash \\N and \\t literal',
        "tab\tnew\nline\rreturn",
        "",
        "Ünïcødé — 合計 €",
        "x" * 1500,
    ]
    fields = [{"name": f"f{i};--", "value": value} for i, value in enumerate(hostile)]
    fields.append({"name": "'; DELETE FROM documents;--", "value": "1", "currency": "E\tUR"})
    extraction_id = store_extraction(session, doc_id, version, None, fields)
    session.commit()
    stored = session.execute(
        sa.select(Field.name, Field.value, Field.currency)
        .where(Field.extraction_id == extraction_id)
        .order_by(Field.id)
    ).all()
    assert [value for _, value, _ in stored] == [*hostile, "1"]
    assert stored[-1] == ("'; DELETE FROM documents;--", "1", "E\tUR")
    assert session.scalar(sa.select(sa.func.count()).select_from(Document)) == 1

    # The portable INSERT path (drivers without COPY) stores the same values.
    rows = [extractions._field_row(extraction_id, f) for f in fields]
    extractions._insert_fields(session, rows, use_copy=False)
    again = session.scalars(
        sa.select(Field.value).where(Field.extraction_id == extraction_id).order_by(Field.id)
    ).all()
    assert again == [*hostile, "1", *hostile, "1"]


def test_field_normalised_values_and_boxes(session: Session):
    doc_id = add_documents(session, 1)[0]
    version = register_model_version(session, "v1", "file:///m/v1")
    store_extraction(
        session,
        doc_id,
        version,
        None,
        [
            {
                "name": "total",
                "value": "$1,234.50",
                "value_num": "1234.50",
                "currency": "USD",
                "confidence": 0.93,
                "page": 0,
                "box": [10.4, 20.6, 110, 42],
                "review_status": "accepted",
            },
            {"name": "due", "value": "March 3, 2026", "value_date": "2026-03-03", "value_num": 1.5},
        ],
    )
    rows = session.scalars(sa.select(Field).order_by(Field.id)).all()
    total, due = rows
    assert total.value_num == Decimal("1234.50") and total.currency == "USD"
    assert (total.box_x0, total.box_y0, total.box_x1, total.box_y1) == (10, 21, 110, 42)
    assert (total.page, total.review_status) == (0, "accepted")
    assert due.value_date == dt.date(2026, 3, 3) and due.value_num == Decimal("1.5")
    assert due.box_x0 is None and due.review_status == "unreviewed"

    with pytest.raises(ValueError, match="unknown field keys"):
        store_extraction(session, doc_id, version, None, [{"name": "a", "valu": "b"}])
    with pytest.raises(ValueError, match="box"):
        store_extraction(
            session, doc_id, version, None, [{"name": "a", "value": "b", "box": [1, 2]}]
        )


def test_store_extractions_in_one_batch(session: Session):
    ids = add_documents(session, 50)
    version = register_model_version(session, "v1", "file:///m/v1")
    job = open_job(session, "digitize")
    records = [
        ExtractionRecord(
            doc_id, version, job, [{"name": f"k{j}", "value": str(j)} for j in range(doc_id % 5)]
        )
        for doc_id in ids
    ]
    extraction_ids = store_extractions(session, records)
    assert len(set(extraction_ids)) == 50
    assert session.scalar(sa.select(sa.func.count()).select_from(Field)) == sum(
        doc_id % 5 for doc_id in ids
    )
    assert document_status_counts(session)["extracted"] == 50
    assert store_extractions(session, []) == []


# ---------------------------------------------------------------------------------------------
# views


def test_current_fields_and_document_fields_views(session: Session):
    a, b, c = add_documents(session, 3)
    old = register_model_version(session, "v1", "file:///m/v1")
    new = register_model_version(session, "v2", "file:///m/v2")
    store_extraction(session, a, old, None, [{"name": "total", "value": "500", "value_num": 500}])
    store_extraction(
        session, b, old, None, [{"name": "total", "value": "150.00", "value_num": "150.00"}]
    )
    session.commit()  # the next extraction is later: a new transaction, a later now()
    store_extraction(
        session,
        a,
        new,
        None,
        [
            {"name": "total", "value": "90", "value_num": 90, "box": [1, 2, 3, 4], "page": 0},
            {"name": "vendor", "value": "ACME", "confidence": 0.4},
            {"name": "vendor", "value": "ACME Corp", "confidence": 0.9},
        ],
    )
    session.commit()

    big_totals = session.execute(
        sa.text(
            "SELECT source_key, value, value_num, model_version FROM current_fields"
            " WHERE name = 'total' AND value_num > 100 ORDER BY source_key"
        )
    ).all()
    # Document a's latest extraction (v2) says 90: its older v1 answer of 500 is not current.
    assert big_totals == [("scans/00001.pdf", "150.00", Decimal("150.00"), "v1")]

    current_a = session.execute(
        sa.text(
            "SELECT name, value, box, page, sha256 FROM current_fields"
            " WHERE document_id = :id ORDER BY field_id"
        ),
        {"id": a},
    ).all()
    assert current_a == [
        ("total", "90", [1, 2, 3, 4], 0, sha(0)),
        ("vendor", "ACME", None, None, sha(0)),
        ("vendor", "ACME Corp", None, None, sha(0)),
    ]

    per_document = {
        row.document_id: row
        for row in session.execute(sa.text("SELECT * FROM document_fields")).all()
    }
    assert set(per_document) == {a, b, c}
    assert per_document[a].fields == {"total": "90", "vendor": "ACME Corp"}
    assert per_document[a].model_version == "v2"
    assert per_document[a].status == "extracted"
    assert per_document[b].fields == {"total": "150.00"}
    assert per_document[c].fields == {}
    assert (per_document[c].status, per_document[c].extracted_at) == ("new", None)
    invoice = session.execute(
        sa.text("SELECT document_id FROM document_fields WHERE fields->>'vendor' = 'ACME Corp'")
    ).scalar_one()
    assert invoice == a


@pytest.mark.parametrize("use_copy", [True, False], ids=["copy", "insert"])
def test_raw_value_is_stored_beside_the_styled_value(
    session: Session, monkeypatch: pytest.MonkeyPatch, use_copy: bool
):
    """The text as printed ("22 Mar 18") is kept next to the value in the labels' style
    ("22 MAR 18"); a field no style changed stores NULL, which current_fields shows as the
    value. Both ways `store_extractions` writes fields store the same."""
    if use_copy:
        assert extractions._can_copy(session)  # the test database's driver takes the COPY path
    else:
        monkeypatch.setattr(extractions, "_can_copy", lambda session: False)
    doc_id = add_documents(session, 1)[0]
    version = register_model_version(session, "v1", "file:///m/v1")
    store_extraction(
        session,
        doc_id,
        version,
        None,
        [
            {"name": "date", "value": "22 MAR 18", "raw_value": "22 Mar 18"},
            {"name": "total", "value": "9.00"},
            {"name": "company", "value": "ACME", "raw_value": "ACME"},  # unchanged: NULL too
            {"name": "note", "value": "A\tB", "raw_value": "a\tb \\N"},  # COPY escapes
        ],
    )
    session.commit()

    stored = session.execute(sa.select(Field.name, Field.value, Field.raw_value)).all()
    assert sorted(stored) == [
        ("company", "ACME", None),
        ("date", "22 MAR 18", "22 Mar 18"),
        ("note", "A\tB", "a\tb \\N"),
        ("total", "9.00", None),
    ]
    current = session.execute(
        sa.text("SELECT name, value, raw_value FROM current_fields WHERE document_id = :id"),
        {"id": doc_id},
    ).all()
    assert sorted(current) == [
        ("company", "ACME", "ACME"),
        ("date", "22 MAR 18", "22 Mar 18"),
        ("note", "A\tB", "a\tb \\N"),
        ("total", "9.00", "9.00"),
    ]
    # raw_value follows the v1 columns, then 0006 appends the review columns: positional
    # readers of the v1 columns are unaffected.
    last = session.execute(sa.text("SELECT * FROM current_fields LIMIT 1")).keys()
    assert list(last)[-4:] == ["review_status", "raw_value", "corrected", "model_value"]


# ---------------------------------------------------------------------------------------------
# model versions


def test_one_active_model_version(session: Session):
    assert active_model_version(session) is None
    v1 = register_model_version(
        session,
        "v1",
        "s3://artifacts/models/v1",
        preset="base",
        metrics={"f1": 0.8},
        status="active",
    )
    v2 = register_model_version(session, "v2", "s3://artifacts/models/v2", parent_id=v1)
    assert active_model_version(session).id == v1
    assert session.get(ModelVersion, v2).status == ModelStatus.CANDIDATE

    activate_model_version(session, v2)
    active = active_model_version(session)
    assert (active.id, active.parent_id, active.activated_at is not None) == (v2, v1, True)
    assert session.get(ModelVersion, v1).status == ModelStatus.RETIRED
    assert model_version_by_name(session, "v1").metrics == {"f1": 0.8}
    with pytest.raises(LookupError):
        activate_model_version(session, 10**9)
    assert active_model_version(session).id == v2  # a failed activation retires nothing
    session.commit()

    # The database itself refuses a second active row, whatever the code around it does.
    with pytest.raises(IntegrityError):
        session.execute(
            sa.update(ModelVersion).where(ModelVersion.id == v1).values(status="active")
        )
    session.rollback()
    with pytest.raises(IntegrityError):
        register_model_version(session, "v2", "s3://duplicate/name")
    session.rollback()


# ---------------------------------------------------------------------------------------------
# labels and training runs


def test_labels_replace_and_latest_source_wins(session: Session):
    a, b, _ = add_documents(session, 3)
    assert store_labels(session, a, {"total": "10.00", "vendor": "ACME"}, "import") == 2
    store_labels(session, b, {"total": "7"}, "import")
    session.commit()
    store_labels(session, a, {"total": "12.00"}, "review")
    store_labels(session, b, {"total": "8"}, "import")  # same source: replaced
    assert store_labels(session, b, {}, "import") == 0
    session.commit()

    labelled = labelled_documents(session)
    assert [d.document_id for d in labelled] == [a, b]
    assert labelled[0].labels == {"total": "12.00", "vendor": "ACME"}
    assert labelled[1].labels == {"total": "8"}
    assert labelled[0].sha256 == sha(0) and labelled[0].key == "scans/00000.pdf"
    imported_only = labelled_documents(session, sources=["import"])
    assert imported_only[0].labels == {"total": "10.00", "vendor": "ACME"}
    assert labelled_documents(session, sources=["nobody"]) == []


def test_training_runs(session: Session):
    base = register_model_version(session, "v1", "file:///m/v1", status="active")
    job = open_job(session, "finetune", parameters={"epochs": 3})
    run = start_training_run(
        session,
        "finetune",
        base_version_id=base,
        job_id=job,
        parameters={"lr": 3e-4},
        train_size=80,
    )
    result = register_model_version(session, "v2", "file:///m/v2", parent_id=base)
    curve = [{"step": 0, "loss": 2.5}, {"step": 10, "loss": 1.25}]
    finish_training_run(
        session,
        run,
        "completed",
        result_version_id=result,
        metrics={"holdout_f1": 0.91, "base_f1": 0.88},
        loss_curve=curve,
        holdout_size=20,
    )
    failed = start_training_run(session, "pretrain")
    finish_training_run(session, failed, "failed", error="out of memory")
    session.expire_all()

    done = session.get(TrainingRun, run)
    assert (done.status, done.result_version_id, done.base_version_id) == (
        "completed",
        result,
        base,
    )
    assert (done.train_size, done.holdout_size, done.job_id) == (80, 20, job)
    assert done.loss_curve == curve and done.metrics["holdout_f1"] == 0.91
    assert done.parameters == {"lr": 3e-4} and done.finished_at is not None
    broken = session.get(TrainingRun, failed)
    assert (broken.status, broken.error, broken.loss_curve) == ("failed", "out of memory", [])
    with pytest.raises(ValueError):
        finish_training_run(session, run, "running")
    with pytest.raises(LookupError):
        finish_training_run(session, 10**9, "failed")
