"""Errors sorted into the right class (`flows.retries`): what is retried, what goes back to the
queue, and what is the document's own fault. The database errors are real ones, provoked on
the real PostgreSQL of the test run; the out-of-memory errors are real where this machine can
raise them (Python's MemoryError, torch's CPU allocator) and the libraries' own exception types
where it cannot (CUDA, onnxruntime)."""

from __future__ import annotations

import psycopg2.errors
import pytest
import sqlalchemy as sa
from helpers_flows import build_random_model, document_states, put_numbered_pages
from test_flows import prepare_services

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    return build_random_model(tmp_path_factory.getbasetemp() / "random-docformerv2")


def raised(statement: sa.TextClause, connection: sa.Connection) -> BaseException:
    with pytest.raises(sa.exc.DBAPIError) as error:
        connection.execute(statement)
    return error.value


def test_database_errors_are_classed_by_what_cures_them(empty_database_url):
    """A statement timeout and a full disk are out of resources: not retried in the task,
    never a document's fault. A serialization failure and a lost connection are transient."""
    from flows.retries import is_resource_exhaustion, is_transient

    engine = sa.create_engine(empty_database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text("SET statement_timeout = '20ms'"))
        timeout = raised(sa.text("SELECT pg_sleep(5)"), conn)
    assert isinstance(timeout.orig, psycopg2.errors.QueryCanceled)
    assert not is_transient(timeout) and is_resource_exhaustion(timeout)

    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE counter (n int); INSERT INTO counter VALUES (0)"))
    with engine.connect() as first, engine.connect() as second:
        first.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        first.execute(sa.text("SELECT n FROM counter")).all()
        second.execute(sa.text("UPDATE counter SET n = 1"))
        second.commit()
        conflict = raised(sa.text("UPDATE counter SET n = 2"), first)
    assert isinstance(conflict.orig, psycopg2.errors.SerializationFailure)
    assert is_transient(conflict) and not is_resource_exhaustion(conflict)

    with engine.connect() as victim, engine.connect() as killer:
        pid = victim.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        killer.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        lost = raised(sa.text("SELECT 1"), victim)
    assert is_transient(lost) and not is_resource_exhaustion(lost)
    engine.dispose()

    # A full disk cannot be had on demand here: psycopg2's own type for SQLSTATE 53100.
    full = sa.exc.OperationalError(
        "INSERT INTO fields ...",
        {},
        psycopg2.errors.DiskFull('could not extend file "base/1/2": No space left on device'),
    )
    assert not is_transient(full) and is_resource_exhaustion(full)


def test_running_out_of_memory_is_never_the_documents_fault():
    """The ways a worker runs out of memory are told apart from a bad document, also when the
    OCR step wrapped them in its own DocumentError; they are retried with backoff."""
    import torch
    from onnxruntime.capi.onnxruntime_pybind11_state import RuntimeException

    from docformer.io import DocumentError
    from docformer.reader import OCRFailed
    from flows.retries import is_resource_exhaustion, is_transient

    def caught(action) -> BaseException:
        try:
            action()
        except Exception as error:  # the error under test
            return error
        raise AssertionError("no error")

    python = caught(lambda: bytearray(10**15))
    cpu = caught(lambda: torch.empty(10**15, dtype=torch.uint8))
    cuda = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    onnx = RuntimeException(
        "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
        "running Conv node. Failed to allocate memory for requested buffer of size 1073741824"
    )
    try:
        raise OCRFailed("page 1: OCR error: MemoryError", source="s3://inbox/a.png") from python
    except DocumentError as error:
        wrapped = error
    for error in (python, cpu, cuda, onnx, wrapped):
        assert is_resource_exhaustion(error) and is_transient(error), repr(error)
    damaged = DocumentError("page 1 cannot be decoded", source="s3://inbox/b.png")
    for error in (damaged, ValueError("no fields"), RuntimeError("shape mismatch")):
        assert not is_resource_exhaustion(error) and not is_transient(error), repr(error)


def test_a_statement_timeout_while_storing_goes_back_to_the_queue_without_retries(
    prefect_api, docflow_env, random_model, monkeypatch
):
    """The chunk's store meets a real statement timeout: it is tried once, not three more
    times with backoff, and its documents go back to the queue with the reason; none failed."""
    import db.extractions
    from flows.digitize import digitize

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    put_numbered_pages(settings, 2, "timeout/")
    attempts = []

    def store_past_the_timeout(session, records):
        attempts.append(len(records))
        session.execute(sa.text("SET LOCAL statement_timeout = '10ms'"))
        session.execute(sa.text("SELECT pg_sleep(5)"))

    monkeypatch.setattr(db.extractions, "store_extractions", store_past_the_timeout)
    summary = digitize(model_version=str(random_model), chunk_size=2)
    assert attempts == [2]
    assert summary["extracted"] == 0 and summary["failed"] == 0
    states = document_states(url)
    assert {state.status for state in states.values()} == {"queued"}
    assert all("statement timeout" in state.last_error for state in states.values())


def test_a_document_whose_extraction_runs_out_of_memory_goes_back_to_the_queue(
    prefect_api, docflow_env, random_model, monkeypatch
):
    """The extractor runs out of memory on each document (a real MemoryError, returned per
    document as `extract_each` does): the documents are released with the reason, not failed
    for good, and nothing is stored."""
    from docformer.extraction import Extractor
    from flows.digitize import digitize

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    put_numbered_pages(settings, 2, "oom/")

    def out_of_memory(self, documents):
        try:
            bytearray(10**15)
        except MemoryError as error:
            return [error for _ in documents]
        raise AssertionError("no MemoryError")

    monkeypatch.setattr(Extractor, "extract_each", out_of_memory)
    summary = digitize(model_version=str(random_model), chunk_size=2)
    assert summary["extracted"] == 0 and summary["failed"] == 0
    states = document_states(url)
    assert {state.status for state in states.values()} == {"queued"}
    assert all("out of resources while extracting" in s.last_error for s in states.values())
    assert all(state.extractions == 0 for state in states.values())


def test_an_object_storage_refuses_to_read_is_that_objects_failure_and_the_rest_go_on(
    prefect_api, docflow_env, random_model, monkeypatch
):
    """Of three objects, S3 refuses to read one (AccessDenied, as a bucket policy on one key
    gives it): that object is the run's one failure, with the reason; the other two are
    extracted. Once it is readable, the next run reads it: nothing is lost."""
    from flows.digitize import digitize
    from flows.storage import ObjectStore, StorageAccessDenied

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    keys = put_numbered_pages(settings, 3, "denied/")
    denied = keys[1]
    read_bytes = ObjectStore.read_bytes

    def refuse_one(self, bucket, key, *args, **kwargs):
        if key == denied:
            raise StorageAccessDenied(f"access denied to s3://{bucket}/{key}: AccessDenied")
        return read_bytes(self, bucket, key, *args, **kwargs)

    monkeypatch.setattr(ObjectStore, "read_bytes", refuse_one)
    summary = digitize(model_version=str(random_model), chunk_size=3)
    assert summary["status"] == "completed" and summary["extracted"] == 2
    assert [f["key"] for f in summary["failures"]] == [denied]
    assert "cannot read the object: access denied" in summary["failures"][0]["reason"]

    monkeypatch.setattr(ObjectStore, "read_bytes", read_bytes)
    again = digitize(model_version=str(random_model), chunk_size=3)
    assert again["extracted"] == 1 and not again["failures"]
    states = document_states(url)
    assert sorted(states) == sorted(keys)
    assert {state.status for state in states.values()} == {"extracted"}
