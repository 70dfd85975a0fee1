"""Attempts per document (reliability item 2), on the real PostgreSQL, SeaweedFS and Prefect API:
a document that breaks its run (an unexpected exception while it is read, or a process killed
while it is worked on) is no longer retried forever, and no longer drags its chunk with it.

- every start of work on a document counts an attempt (`documents.attempts`, migration 0007);
  a failure that is not the documents' doing (storage or database unreachable or out of room)
  gives it back, and a reprocess starts again from zero;
- a document out of attempts (`DOCFLOW_MAX_ATTEMPTS`) is failed with the last reason instead of
  claimed;
- an unexpected exception while one document is read releases that document alone;
- documents worked on before without finishing are worked on alone, one after another, after
  the rest of the run, so a crash is pinned to the document behind it.

Two flow-level tests; the rest call the database functions and the chunk planner directly.
"""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
from helpers_flows import (
    build_random_model,
    document_states,
    expire_claims,
    put_numbered_pages,
    query,
)
from sqlalchemy.orm import Session, sessionmaker
from test_flows import prepare_services

from db import migrate
from db.attempts import STOPPED_WITHOUT_FINISHING, count_attempts, give_up_exhausted
from db.documents import DocumentObject, register_documents
from db.jobs import (
    ClaimedDocument,
    claim_documents,
    mark_crashed_jobs,
    mark_document_failed,
    open_job,
    release_claim,
)
from flows.settings import get_settings


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    return build_random_model(tmp_path_factory.getbasetemp() / "random-docformerv2")


def add_documents(session: Session, count: int) -> list[int]:
    objects = [
        DocumentObject("inbox", f"attempts/{i}.png", f"{i:064x}", 1, "image/png")
        for i in range(count)
    ]
    return [document.id for document in register_documents(session, objects)]


def attempts(session: Session) -> dict[int, int]:
    rows = session.execute(sa.text("SELECT id, attempts FROM documents ORDER BY id"))
    return dict(rows.all())


# --- the counter and its migration -------------------------------------------------------------


def test_migration_0007_adds_the_attempt_count_at_zero_and_its_downgrade_removes_it(
    empty_database_url: str,
):
    """A database at 0006 with a document in it: 0007 adds `documents.attempts`, 0 for the
    rows already there (they get their full count of attempts); down again, the column goes."""
    migrate.upgrade(empty_database_url, "0006")
    insert = (
        "INSERT INTO documents (source_bucket, source_key, sha256, size, media_type, status) "
        "VALUES ('inbox', 'old.png', :sha, 1, 'image/png', 'queued')"
    )
    engine = sa.create_engine(empty_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(insert), {"sha": "a" * 64})
        migrate.upgrade(empty_database_url)
        assert migrate.current(empty_database_url) == "0007"
        assert query(empty_database_url, "SELECT status, attempts FROM documents") == [
            ("queued", 0)
        ]
        migrate.downgrade(empty_database_url, "0006")
        columns = sa.inspect(engine).get_columns("documents")
        assert "attempts" not in {column["name"] for column in columns}
        migrate.upgrade(empty_database_url)
    finally:
        engine.dispose()


def test_each_start_of_work_counts_an_attempt_and_a_reprocess_starts_from_zero(session):
    """A claim alone costs nothing (a run may claim hundreds of documents and die before it
    starts most of them); starting work on a document counts one attempt. A release for the
    document's sake keeps it, one for the run's sake (storage down) gives it back; the next
    claim says how many attempts came before. A reprocess of a finished document starts from
    zero; a finished document keeps the count it took."""
    ids = add_documents(session, 4)
    job = open_job(session, "digitize")
    claimed = claim_documents(session, job, 10, ttl_seconds=3600)
    assert [(d.id, d.attempts) for d in claimed] == [(i, 0) for i in ids]
    assert attempts(session) == dict.fromkeys(ids, 0)

    assert count_attempts(session, job, ids[:3]) == ids[:3]
    assert attempts(session) == {ids[0]: 1, ids[1]: 1, ids[2]: 1, ids[3]: 0}
    assert release_claim(session, ids[0], job, "ValueError: boom") is True
    down = "chunk failed: StorageUnavailable: down"
    assert release_claim(session, ids[1], job, down, attempt_spent=False) is True
    assert mark_document_failed(session, ids[2], job, "damaged_document: cut off") is True
    assert count_attempts(session, job, ids[:3]) == []  # no longer this job's
    assert attempts(session) == {ids[0]: 1, ids[1]: 0, ids[2]: 1, ids[3]: 0}

    again = claim_documents(session, job, 10, ttl_seconds=3600)
    assert [(d.id, d.attempts) for d in again] == [(ids[0], 1), (ids[1], 0)]
    count_attempts(session, job, [ids[0]])
    assert attempts(session)[ids[0]] == 2

    redo = claim_documents(session, job, 10, ttl_seconds=3600, reprocess=True)
    assert [(d.id, d.attempts) for d in redo] == [(ids[2], 0)]
    assert attempts(session)[ids[2]] == 0


def work_on(session: Session, document_ids: list[int]) -> int:
    """A run claims these documents and starts work on them; returns its job."""
    job = open_job(session, "digitize")
    claim_documents(session, job, len(document_ids), 3600, document_ids=document_ids)
    count_attempts(session, job, document_ids)
    return job


def test_a_document_out_of_attempts_is_failed_with_its_last_reason_instead_of_claimed(session):
    """Three documents at the limit: one released three times by an unexpected error, one
    left 'processing' by a run that was killed (its claim simply ran out), one whose job was
    declared crashed. Each is failed with "gave up after 3 attempts: <the last reason>", the
    two that were never told why with the run having stopped without finishing them, and none
    is claimed; their chunk-mates below the limit are claimed as before."""
    poison, killed, crashed, mate, fresh = add_documents(session, 5)
    for _ in range(3):
        job = work_on(session, [poison])
        release_claim(session, poison, job, "ValueError: cannot read this one")
    for _ in range(2):
        job = work_on(session, [killed, crashed, mate])
        mark_crashed_jobs(session, job_ids=[job], error="no sign of life")
    work_on(session, [killed])  # this run dies with it in hand: its claim runs out
    expire_claims(session, [killed])
    job = work_on(session, [crashed])
    mark_crashed_jobs(session, job_ids=[job], error="no sign of life")
    assert attempts(session) == {poison: 3, killed: 3, crashed: 3, mate: 2, fresh: 0}

    gave_up = give_up_exhausted(session, max_attempts=3)
    reasons = {g.id: g.reason for g in gave_up}
    assert reasons == {
        poison: "gave up after 3 attempts: ValueError: cannot read this one",
        killed: f"gave up after 3 attempts: {STOPPED_WITHOUT_FINISHING}",
        crashed: f"gave up after 3 attempts: {STOPPED_WITHOUT_FINISHING}",
    }
    assert STOPPED_WITHOUT_FINISHING == (
        "the run working on it stopped without finishing it (killed, out of memory or crashed)"
    )
    assert sorted(g.key for g in gave_up) == [f"attempts/{i}.png" for i in range(3)]
    rows = session.execute(
        sa.text("SELECT id, status, last_error, claimed_by_job_id FROM documents")
    ).all()
    assert {
        r.id: (r.status, r.last_error, r.claimed_by_job_id) for r in rows if r.id in reasons
    } == {i: ("failed", reason, None) for i, reason in reasons.items()}

    job = open_job(session, "digitize")
    claimed = claim_documents(session, job, 10, ttl_seconds=3600, max_attempts=3)
    assert [(d.id, d.attempts) for d in claimed] == [(mate, 2), (fresh, 0)]
    assert give_up_exhausted(session, max_attempts=3) == []
    # The claim never takes a document out of attempts, even one nobody gave up on yet.
    release_claim(session, mate, job, "ValueError: again")
    session.execute(sa.text("UPDATE documents SET attempts = 5 WHERE id = :id"), {"id": mate})
    assert claim_documents(session, job, 10, ttl_seconds=3600, max_attempts=3) == []
    assert [d.id for d in claim_documents(session, job, 10, 3600, max_attempts=6)] == [mate]


# --- chunks ------------------------------------------------------------------------------------


def claim(document_id: int, attempts: int) -> ClaimedDocument:
    return ClaimedDocument(
        document_id, "inbox", f"{document_id}.png", "0" * 64, "image/png", 1, None, None, attempts
    )


def test_documents_worked_on_before_are_planned_alone_after_the_others():
    """The chunk planner: first attempts in chunks of `chunk_size`, side by side; documents
    with an attempt behind them in chunks of one, the least tried first, after the others."""
    from flows.chunks import plan_chunks

    claimed = [claim(1, 0), claim(2, 2), claim(3, 0), claim(4, 1), claim(5, 0), claim(6, 1)]
    together, alone = plan_chunks(claimed, chunk_size=2)
    assert [[d.id for d in chunk] for chunk in together] == [[1, 3], [5]]
    assert [[d.id for d in chunk] for chunk in alone] == [[4], [6], [2]]
    assert plan_chunks([], chunk_size=8) == ([], [])


def test_only_failures_no_document_can_be_behind_give_the_attempt_back():
    """A chunk that failed because storage or the database could not be reached, or the
    database ran out of room or time, gives its documents' attempt back; a worker out of
    memory (a document may be too big for it) or any other error keeps it."""
    import psycopg2.errors
    from sqlalchemy.exc import OperationalError

    from flows.retries import spares_the_documents
    from flows.storage import StorageUnavailable

    def wrapped(error: BaseException) -> OperationalError:
        return OperationalError("SELECT 1", {}, error)

    assert spares_the_documents(StorageUnavailable("cannot reach the server"))
    assert spares_the_documents(wrapped(psycopg2.OperationalError("server closed")))
    assert spares_the_documents(wrapped(psycopg2.errors.DiskFull("no space left")))
    assert not spares_the_documents(MemoryError())
    assert not spares_the_documents(ValueError("bad page"))
    assert not spares_the_documents(RecursionError("too deep"))


# --- flows -------------------------------------------------------------------------------------


def record_chunks(monkeypatch) -> list[list[str]]:
    """The keys of every chunk that starts OCR, in the order they start."""
    import flows.tasks

    started: list[list[str]] = []
    ocr_chunk = flows.tasks.ocr_chunk

    def recording(claims):
        started.append([c.key for c in claims])
        return ocr_chunk(claims)

    monkeypatch.setattr(flows.tasks, "ocr_chunk", recording)
    return started


def test_a_document_whose_reading_raises_is_released_alone_until_it_runs_out_of_attempts(
    prefect_api, docflow_env, random_model, monkeypatch
):
    """Reading one document of a chunk of three raises a ValueError: that document goes back
    to the queue with the error, counted as an attempt, and its chunk-mates are extracted. The
    next run works on it alone; with `DOCFLOW_MAX_ATTEMPTS=2` the run after that fails it
    ("gave up after 2 attempts: ValueError: …"), lists it in its summary and loads no chunk.
    Before, the whole chunk failed and went back to the queue, on every run."""
    from docformer.reader import DocumentReader
    from flows.digitize import digitize

    monkeypatch.setenv("DOCFLOW_MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    settings = get_settings()
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    keys = put_numbered_pages(settings, 3, "poison/")
    poison = keys[1]
    read = DocumentReader.read

    def raise_for_one(self, data, source, **kwargs):
        if source.endswith(poison):
            raise ValueError("cannot read this one")
        return read(self, data, source, **kwargs)

    monkeypatch.setattr(DocumentReader, "read", raise_for_one)
    chunks = record_chunks(monkeypatch)

    first = digitize(model_version=str(random_model), chunk_size=3)
    assert (first["status"], first["extracted"], first["failed"]) == ("completed", 2, 0)
    assert first["released"] == 1 and chunks == [keys]
    states = document_states(url)
    assert {k: s.status for k, s in states.items()} == {
        keys[0]: "extracted",
        poison: "queued",
        keys[2]: "extracted",
    }
    assert states[poison].last_error == "ValueError: cannot read this one"
    assert query(url, "SELECT max(attempts) FROM documents")[0][0] == 1

    second = digitize(model_version=str(random_model), chunk_size=3)
    assert chunks[1:] == [[poison]]  # alone: nothing else shares its fate
    assert second["released"] == 1 and second["retried_alone"] == 1

    third = digitize(model_version=str(random_model), chunk_size=3)
    reason = "gave up after 2 attempts: ValueError: cannot read this one"
    assert (third["status"], third["failed"], third["extracted"]) == ("completed", 1, 0)
    assert third["failures"] == [{"key": poison, "reason": reason}]
    assert chunks[2:] == []
    state = document_states(url)[poison]
    assert (state.status, state.last_error, state.extractions) == ("failed", reason, 0)


def test_documents_left_by_a_killed_run_are_worked_on_alone_after_the_others(
    prefect_api, docflow_env, random_model, monkeypatch
):
    """A run was killed while it worked on a chunk of three of its four documents (their
    attempt counted, their claims ran out, the fourth never started). The next run marks its
    job crashed, works on the fourth in an ordinary chunk, then on each of the three alone, one
    after another: had one of them killed this run too, it would have taken only itself down.
    All four are extracted once. Before, the four went into one chunk together again."""
    from db.session import make_engine, session_scope
    from flows.clients import object_store
    from flows.digitize import digitize

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    keys = put_numbered_pages(settings, 4, "killed/")
    store = object_store(settings)
    objects = []
    for info in store.list_objects(settings.inbox_bucket, "killed/"):
        data = store.read_bytes(settings.inbox_bucket, info.key, 10**6)
        sha = hashlib.sha256(data).hexdigest()
        objects.append(
            DocumentObject(
                settings.inbox_bucket, info.key, sha, len(data), "image/png", etag=info.etag or None
            )
        )
    engine = make_engine(url)
    try:
        with session_scope(sessionmaker(engine)) as session:
            ids = {r.key: r.id for r in register_documents(session, objects)}
            killed = open_job(session, "digitize")
            claim_documents(session, killed, 4, ttl_seconds=3600)
            count_attempts(session, killed, [ids[k] for k in keys[:3]])
            expire_claims(session, list(ids.values()))
    finally:
        engine.dispose()
    chunks = record_chunks(monkeypatch)

    summary = digitize(model_version=str(random_model), chunk_size=4)
    assert chunks == [[keys[3]], [keys[0]], [keys[1]], [keys[2]]]
    assert (summary["status"], summary["extracted"], summary["failed"]) == ("completed", 4, 0)
    assert summary["retried_alone"] == 3
    [(status,)] = query(url, "SELECT status FROM jobs WHERE id = :id", id=killed)
    assert status == "crashed"
    states = document_states(url)
    assert {(s.status, s.extractions) for s in states.values()} == {("extracted", 1)}
    counted = dict(query(url, "SELECT source_key, attempts FROM documents"))
    assert counted == {keys[0]: 2, keys[1]: 2, keys[2]: 2, keys[3]: 1}
