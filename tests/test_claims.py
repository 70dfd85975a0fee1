"""A run's claims over its whole life (reliability item 1), on the real PostgreSQL, SeaweedFS and
Prefect API: claims renew while a chunk is worked on, however long that takes; a job whose
claims were taken over cannot finish those documents; and a job once declared crashed stays
`crashed` when its run ends after all.

One flow-level test (a chunk held in extraction past the claim TTL); the rest call the
database functions and the store task's function directly, which is where the rules live.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from helpers_flows import (
    Background,
    build_random_model,
    expire_claims,
    put_numbered_pages,
    query,
    wait_for,
)
from sqlalchemy.orm import Session, sessionmaker
from test_flows import prepare_services

from db.documents import DocumentObject, register_documents
from db.extractions import ExtractionRecord
from db.jobs import (
    abandoned_jobs,
    claim_documents,
    close_job,
    mark_crashed_jobs,
    open_job,
)
from db.model_versions import register_model_version
from db.session import make_engine, make_session_factory, session_scope
from flows.chunks import ExtractedChunk, Failure
from flows.settings import Settings, get_settings


@pytest.fixture
def sessions(docflow_env: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on the test's migrated database, the one the tasks' own pool also uses."""
    from db.migrate import upgrade

    url = docflow_env.database_url.get_secret_value()
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def add_documents(session: Session, count: int) -> list[int]:
    objects = [
        DocumentObject("inbox", f"claims/{i}.png", f"{i:064x}", 1, "image/png")
        for i in range(count)
    ]
    return [document.id for document in register_documents(session, objects)]


def record(document_id: int, version: int, job_id: int, total: str) -> ExtractionRecord:
    page = {"page_index": 0, "width": 10, "height": 10, "word_count": 1, "text": total}
    return ExtractionRecord(
        document_id, version, job_id, [{"name": "total", "value": total}], [page]
    )


def extracted_chunk(records: list[ExtractionRecord], failures: list[int]) -> ExtractedChunk:
    """What `extract_chunk` hands `store_chunk`: the records, and documents that failed."""
    return ExtractedChunk(
        records=records,
        keys={r.document_id: f"claims/{r.document_id}.png" for r in records},
        failures=[Failure(f"claims/{d}.png", "damaged_document: test", d) for d in failures],
        pages=sum(len(r.pages or []) for r in records),
    )


def states(session: Session) -> dict[int, tuple]:
    """{document id: (status, claimed by, extractions, fields, the stored totals)}."""
    rows = session.execute(
        sa.text(
            """
            SELECT d.id, d.status, d.claimed_by_job_id,
                   (SELECT count(*) FROM extractions e WHERE e.document_id = d.id),
                   (SELECT count(*) FROM fields f JOIN extractions e ON e.id = f.extraction_id
                     WHERE e.document_id = d.id),
                   (SELECT array_agg(f.value ORDER BY f.value) FROM fields f
                     JOIN extractions e ON e.id = f.extraction_id WHERE e.document_id = d.id)
            FROM documents d ORDER BY d.id
            """
        )
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def counts(session: Session, job_id: int) -> tuple:
    return session.execute(
        sa.text(
            "SELECT status, documents_seen, documents_extracted, documents_failed, pages "
            "FROM jobs WHERE id = :id"
        ),
        {"id": job_id},
    ).one()


# --- (a) claims renew while a chunk is worked on -------------------------------------------------


def test_the_claims_heartbeat_renews_while_it_runs_and_stops_with_its_block(sessions):
    """A block of work longer than the TTL under `ClaimHeartbeat` keeps the job's claims
    live (no other run may take them, the job is not abandoned); once the block ends, also by
    an error, the heartbeat stops and the claims run out as a dead run's would."""
    from flows.tasks import ClaimHeartbeat

    # Beats every second, renewing claims with under two seconds left: a margin a busy CI
    # machine cannot eat, where 2 s (beats every half second) left one second.
    ttl = 4
    with session_scope(sessions) as session:
        ids = add_documents(session, 2)
        job = open_job(session, "digitize")
        claim_documents(session, job, 2, ttl_seconds=ttl)
    ends = sa.text("SELECT max(claim_expires_at) FROM documents")
    with session_scope(sessions) as session:
        first_expiry = session.execute(ends).scalar()

    failing = pytest.raises(RuntimeError, match="the chunk failed")
    with failing, ClaimHeartbeat(job, ttl, session_factory=sessions) as heartbeat:
        past = sa.text("SELECT now() > :at + make_interval(secs => :ttl)")
        wait_for(lambda: query_scalar(sessions, past, at=first_expiry, ttl=ttl), every=0.05)
        with sessions() as session:  # another run looks at them, then changes its mind
            assert abandoned_jobs(session, "digitize", ttl) == []
            other = open_job(session, "digitize")
            assert claim_documents(session, other, 10, ttl_seconds=ttl) == []
            live = "SELECT count(*) FROM documents WHERE claim_expires_at > now()"
            assert session.execute(sa.text(live)).scalar() == len(ids)
            session.rollback()
        raise RuntimeError("the chunk failed")
    assert not heartbeat.running
    assert heartbeat.renewed >= len(ids)

    # Stopped for good: nothing renews them any more, so they run out and the job is dead.
    expiry = query_scalar(sessions, ends)
    wait_for(lambda: query_scalar(sessions, sa.text("SELECT now() > :at"), at=expiry), every=0.05)
    with sessions() as session:
        assert abandoned_jobs(session, "digitize", ttl) == [job]


def query_scalar(factory: sessionmaker[Session], statement: sa.TextClause, **params):
    with factory() as session:
        return session.execute(statement, params).scalar()


def test_a_chunk_worked_on_longer_than_the_claim_ttl_keeps_its_claims(
    prefect_api, docflow_env, monkeypatch, tmp_path_factory
):
    """A real run whose chunk is held in extraction past the claim TTL (the shortest one
    allowed): while it is held, its document's claim is still live, no other run could take
    it and its job is not taken for dead; let go, the run completes and stores it once.
    Before, claims were renewed only between stages, so this one ran out mid-extraction."""
    import docformer.extraction
    from flows.digitize import digitize

    ttl = 10
    monkeypatch.setenv("DOCFLOW_CLAIM_TTL_SECONDS", str(ttl))
    get_settings.cache_clear()
    settings = get_settings()
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    put_numbered_pages(settings, 1, "long/")
    model = build_random_model(tmp_path_factory.getbasetemp() / "random-docformerv2")

    extracting, let_go = threading.Event(), threading.Event()
    load = docformer.extraction.load_extractor

    def held_in_extraction(*args, **kwargs):
        extracting.set()
        let_go.wait(120)
        return load(*args, **kwargs)

    monkeypatch.setattr(docformer.extraction, "load_extractor", held_in_extraction)
    run = Background(lambda: digitize(model_version=str(model), prefix="long/"))
    try:
        assert extracting.wait(120), "the run never reached extraction"
        [(job_id, first_expiry)] = query(
            url, "SELECT claimed_by_job_id, claim_expires_at FROM documents"
        )
        # The claim it had when extraction began is past its time ...
        wait_for(lambda: query(url, "SELECT now() > :at", at=first_expiry)[0][0], every=0.2)
        # ... yet the run, still extracting, holds the document: nothing could take it.
        [(holder, live)] = query(
            url, "SELECT claimed_by_job_id, claim_expires_at > now() FROM documents"
        )
        assert (holder, live) == (job_id, True)
        engine = make_engine(url)
        try:
            with Session(engine) as session:
                assert abandoned_jobs(session, "digitize", ttl) == []
                other = open_job(session, "digitize")
                assert claim_documents(session, other, 10, ttl_seconds=ttl) == []
                session.rollback()
        finally:
            engine.dispose()
    finally:
        let_go.set()
        wait_for(run.done, timeout=240)  # never leave the run working on a dropped database
    summary = run.result()

    assert (summary["status"], summary["extracted"], summary["failed"]) == ("completed", 1, 0)
    [(status, extractions)] = query(
        url,
        "SELECT d.status, (SELECT count(*) FROM extractions e WHERE e.document_id = d.id) "
        "FROM documents d",
    )
    assert (status, extractions) == ("extracted", 1)
    [(job_status,)] = query(url, "SELECT status FROM jobs")
    assert job_status == "completed"


# --- (b) a job that lost a claim cannot finish that document ------------------------------------


def test_a_job_whose_claims_were_taken_cannot_finish_those_documents(sessions):
    """Job A holds four documents; two of its claims run out and job B takes them while A is
    still working. A's store then writes only the two it still holds (one extracted, one
    failed) and reports the other two as lost, writing nothing of them (no extraction, no
    fields, no pages, no failure, no count); B finishes them, each stored exactly once.
    Before, A's store marked B's documents extracted and wrote its fields over them."""
    from flows.tasks import store_chunk

    with session_scope(sessions) as session:
        ids = add_documents(session, 4)
        version = register_model_version(session, "v1", "file:///m/v1")
        job_a = open_job(session, "digitize")
        claim_documents(session, job_a, 4, ttl_seconds=3600)
        expire_claims(session, ids[:2])
    with session_scope(sessions) as session:
        job_b = open_job(session, "digitize")
        taken = claim_documents(session, job_b, 4, ttl_seconds=3600)
        assert [d.id for d in taken] == ids[:2]
        assert abandoned_jobs(session, "digitize", 3600) == []  # A's other claims are live

    chunk_a = extracted_chunk(
        [record(ids[0], version, job_a, "A0"), record(ids[2], version, job_a, "A2")],
        failures=[ids[1], ids[3]],
    )
    stored_a = store_chunk.fn(chunk_a, job_a, 4)
    with sessions() as session:
        after_a = states(session)
        assert after_a[ids[0]] == ("processing", job_b, 0, 0, None)
        assert after_a[ids[1]] == ("processing", job_b, 0, 0, None)
        assert after_a[ids[2]] == ("extracted", None, 1, 1, ["A2"])
        assert after_a[ids[3]][:3] == ("failed", None, 0)
        pages = "SELECT count(*) FROM pages WHERE document_id = ANY(:ids)"
        assert session.execute(sa.text(pages), {"ids": ids[:2]}).scalar() == 0
        assert counts(session, job_a) == ("running", 2, 1, 1, 1)  # the two it held
    assert stored_a.extracted == 1 and [f.document_id for f in stored_a.failures] == [ids[3]]
    assert sorted(f.document_id for f in stored_a.lost) == ids[:2]
    assert all("claim" in f.reason for f in stored_a.lost)

    stored_b = store_chunk.fn(
        extracted_chunk([record(ids[0], version, job_b, "B0")], failures=[ids[1]]), job_b, 2
    )
    assert stored_b.extracted == 1 and not stored_b.lost
    with sessions() as session:
        final = states(session)
        assert final[ids[0]] == ("extracted", None, 1, 1, ["B0"])
        assert final[ids[1]][:3] == ("failed", None, 0)
        extracted = "SELECT sum(documents_extracted) + sum(documents_failed) FROM jobs"
        assert session.execute(sa.text(extracted)).scalar() == len(ids)


def test_store_claimed_extractions_writes_only_what_the_job_holds(sessions):
    """The database rule on its own: `store_claimed_extractions` locks the documents, keeps
    the records whose document `job_id` still claims, and reports the rest untouched; a
    document released (its job declared crashed) is as lost as one another job took."""
    from db.extractions import store_claimed_extractions

    with session_scope(sessions) as session:
        ids = add_documents(session, 3)
        version = register_model_version(session, "v1", "file:///m/v1")
        job = open_job(session, "digitize")
        claim_documents(session, job, 3, ttl_seconds=3600)
        session.execute(
            sa.text(
                "UPDATE documents SET status = 'queued', claimed_by_job_id = NULL, "
                "claim_expires_at = NULL WHERE id = :id"
            ),
            {"id": ids[1]},
        )
    with session_scope(sessions) as session:
        records = [record(i, version, job, f"v{i}") for i in ids]
        result = store_claimed_extractions(session, job, records)
        assert result.stored == [ids[0], ids[2]] and result.lost == [ids[1]]
        assert len(result.extraction_ids) == 2
        assert store_claimed_extractions(session, job, []).stored == []
    with sessions() as session:
        final = states(session)
    assert final[ids[1]] == ("queued", None, 0, 0, None)
    assert [final[i][:4] for i in (ids[0], ids[2])] == [("extracted", None, 1, 1)] * 2


# --- (c) a crashed job stays crashed -------------------------------------------------------------


def test_a_job_declared_crashed_stays_crashed_when_its_run_ends_after_all(sessions):
    """Job A loses every claim (a run past the TTL with no sign of life); the next run's rule
    marks it crashed and job B takes its documents. A's run was only slow: its store writes
    nothing and its close keeps `crashed`, saying that the run ended later and how; the job
    counts add up to the documents, each extracted once. Before, A's close turned `crashed`
    into `completed` and its store counted B's documents a second time."""
    from flows.tasks import store_chunk

    with session_scope(sessions) as session:
        ids = add_documents(session, 3)
        version = register_model_version(session, "v1", "file:///m/v1")
        job_a = open_job(session, "digitize")
        claim_documents(session, job_a, 3, ttl_seconds=3600)
        expire_claims(session, ids)
    with session_scope(sessions) as session:  # what the next run's discovery does
        job_b = open_job(session, "digitize")
        assert abandoned_jobs(session, "digitize", 3600, exclude=[job_b]) == [job_a]
        mark_crashed_jobs(session, job_ids=[job_a], error="no sign of life")
        assert len(claim_documents(session, job_b, 3, ttl_seconds=3600)) == 3

    late = extracted_chunk([record(i, version, job_a, "late") for i in ids], failures=[])
    assert store_chunk.fn(late, job_a, 3).extracted == 0
    with session_scope(sessions) as session:
        assert close_job(session, job_a, "completed") == "crashed"
    store_chunk.fn(extracted_chunk([record(i, version, job_b, "B") for i in ids], []), job_b, 3)
    with session_scope(sessions) as session:
        assert close_job(session, job_b, "completed", error=None) == "completed"
        # A failed close after the crash keeps it too, and says so.
        other = open_job(session, "digitize")
        mark_crashed_jobs(session, job_ids=[other], error="lost")
        close_job(session, other, "failed", error="RuntimeError: boom")

    with sessions() as session:
        job = session.execute(
            sa.text("SELECT status, error, finished_at FROM jobs WHERE id = :id"), {"id": job_a}
        ).one()
        assert job.status == "crashed"
        assert job.error.startswith("no sign of life")
        assert "ended later" in job.error and "completed" in job.error
        assert counts(session, job_a)[1:] == (0, 0, 0, 0)
        assert counts(session, job_b)[:3] == ("completed", 3, 3)
        [(status, error)] = session.execute(
            sa.text("SELECT status, error FROM jobs WHERE id = :id"), {"id": other}
        ).all()
        assert status == "crashed" and error.startswith("lost") and "boom" in error
        final = states(session)
    assert list(final.values()) == [("extracted", None, 1, 1, ["B"])] * len(ids)
