"""Bad input and faults, through the real `digitize` and `finetune` flows on real PostgreSQL,
real SeaweedFS and a real Prefect API.

Every bad input is made by the test itself and sent through a run together with good
documents; every fault is a real one: a worker process killed with SIGKILL, a PostgreSQL
server restarted, a SeaweedFS server stopped, two runs at once, a fine-tuning base whose
weights file was cut off. Where a fault must strike at a known point of a run, the run is held
by a lock on `documents` (taken by the test) at the moment it registers what it listed; the
test acts, then lets go (`helpers_flows.documents_locked`).

OCR results are prepared in the cache and the model has random weights with a tiny generation
budget: these tests are about what happens to documents, and must stay fast.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import signal

import numpy as np
import pytest
import sqlalchemy as sa
from helpers_flows import (
    FIELDS,
    Background,
    build_random_model,
    document_states,
    documents_locked,
    numbered_page,
    process_env,
    put_numbered_pages,
    put_with_ocr,
    query,
    spare_postgres,
    spare_s3,
    start_digitize_process,
    wait_for,
)
from PIL import Image
from test_document_budget import POSTER_PT, blank_pdf
from test_flows import prepare_services
from test_reading import corrupt_jpeg, encrypted_pdf, png_claiming, truncated_pdf

from flows.settings import Settings, get_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_api():
    """A throwaway Prefect API whose extraction limit lets every task thread extract at once:
    these tests are about claims and faults, not about queueing for the model."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.deployments import ensure_concurrency_limits

    with prefect_test_harness(server_startup_timeout=120):
        ensure_concurrency_limits(extract_slots=4)
        yield


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    return build_random_model(tmp_path_factory.getbasetemp() / "random-docformerv2")


def use_settings(monkeypatch, **values: str) -> Settings:
    """Change DOCFLOW_* settings for this test; returns the settings now in force."""
    for name, value in values.items():
        monkeypatch.setenv(f"DOCFLOW_{name.upper()}", value)
    get_settings.cache_clear()
    return get_settings()


def digitize_now(model, **parameters):
    from flows.digitize import digitize

    return digitize(model_version=str(model), **parameters)


class RetryLog(logging.Handler):
    """Collects "<task run>: Retry n/m" (and "Retries are exhausted") from Prefect's log lines
    of the task runs in this process."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"Retry \d+/\d+|Retries are exhausted", record.getMessage())
        if found:  # the task run's name ("ocr-chunk-3f2") comes as an extra
            self.lines.append(f"{getattr(record, 'task_run_name', '')}: {found[0]}")


@pytest.fixture
def retry_log():
    handler = RetryLog()
    logger = logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


# --- bad input ---------------------------------------------------------------------------------


def thousand_page_pdf() -> bytes:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument.new()
    for _ in range(1000):
        pdf.new_page(200, 200)
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


def tiff(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")
    return buffer.getvalue()


def sixteen_bit_tiff(number: int) -> tuple[bytes, object]:
    png, ocr = numbered_page(number)
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.uint16) * 257
    return tiff(Image.fromarray(grey)), ocr  # mode I;16: samples 0..65535


def cmyk_tiff(number: int) -> tuple[bytes, object]:
    png, ocr = numbered_page(number)
    return tiff(Image.open(io.BytesIO(png)).convert("CMYK")), ocr


MAX_BYTES = 2_000_000

# key -> (content, words a person reads in the reason)
BAD_INPUTS = {
    "bad/zero-bytes.pdf": (b"", "the file is empty"),
    "bad/truncated.pdf": (truncated_pdf(), "cut off"),
    "bad/encrypted.pdf": (encrypted_pdf(), "protected by a password"),
    "bad/thousand-pages.pdf": (thousand_page_pdf(), "1000 pages, more than the limit of 200"),
    "bad/program.pdf": (b"\x7fELF\x02\x01\x01\x00" + bytes(4096), "an ELF executable"),
    "bad/login.pdf": (
        b"<!DOCTYPE html><html><body>Your session expired</body></html>",
        "an HTML page",
    ),
    "bad/bomb.png": (png_claiming(50_000, 50_000), "decompression bombs"),
    "bad/corrupt.jpg": (corrupt_jpeg(), "damaged or cut off"),
    # 200 blank 20-inch pages: a few kilobytes, 3.2 billion pixels; refused from page sizes
    "bad/posters.pdf": (blank_pdf(200, POSTER_PT), "more than the limit of 800,000,000 pixels"),
}


def test_bad_input_fails_each_document_with_a_reason_and_spares_the_rest(
    prefect_api, docflow_env, random_model, monkeypatch
):
    """One run over a bucket mixing every kind of bad input with good documents: each bad one
    ends 'failed' with a reason a person can act on and no rows of results; the good ones,
    16-bit and CMYK TIFFs and keys with spaces and other scripts among them, are extracted
    once; the run itself completes."""
    settings = use_settings(monkeypatch, max_document_bytes=str(MAX_BYTES))
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    from flows.clients import object_store

    store = object_store(settings)
    for key, (data, _) in BAD_INPUTS.items():
        store.put_bytes(settings.inbox_bucket, key, data)
    store.put_bytes(settings.inbox_bucket, "bad/too-large.png", b"\x89PNG" + bytes(MAX_BYTES))
    good = {
        "good/sixteen-bit.tif": sixteen_bit_tiff(1),
        "good/cmyk.tif": cmyk_tiff(2),
        "good/with space/scan 3.png": numbered_page(3),
        "good/ünïcødé/收据 €4.png": numbered_page(4),
        "good/..not-a-segment/a..b.png": numbered_page(5),
        "good/%2E%2E/percent-dots.png": numbered_page(6),  # literal: never decoded to ..
        "bad/deleted.png": numbered_page(7),
    }
    for key, (data, ocr) in good.items():
        put_with_ocr(settings, key, data, [ocr])

    # Hold the run once it has listed and hashed the bucket, delete one object, let it go on.
    with documents_locked(url) as wait_until_blocked:
        run = Background(lambda: digitize_now(random_model, chunk_size=3))
        wait_until_blocked()
        store.remove(settings.inbox_bucket, "bad/deleted.png")
    summary = run.result()

    good_keys = [key for key in good if key.startswith("good/")]
    failed_keys = [*BAD_INPUTS, "bad/deleted.png"]
    assert summary["status"] == "completed"
    assert summary["extracted"] == len(good_keys)
    assert summary["failed"] == len(failed_keys) + 1  # and the one too large to read
    states = document_states(url)
    for key in good_keys:
        state = states[key]
        assert (state.status, state.extractions, state.pages) == ("extracted", 1, 1), key
        assert state.last_error is None
    for key in failed_keys:
        state = states[key]
        assert state.status == "failed", key
        assert (state.extractions, state.fields, state.pages) == (0, 0, 0), key
    for key, (_, words) in BAD_INPUTS.items():
        assert words in states[key].last_error, (key, states[key].last_error)
    assert states["bad/deleted.png"].last_error == "deleted between listing and reading"
    # Refused before any byte was read: never a document, a failure of the run with its reason.
    assert "bad/too-large.png" not in states
    reasons = {f["key"]: f["reason"] for f in summary["failures"]}
    assert f"more than the limit of {MAX_BYTES}" in reasons["bad/too-large.png"]
    assert set(reasons) == {*failed_keys, "bad/too-large.png"}
    [job] = query(url, "SELECT * FROM jobs")
    assert (job.status, job.documents_extracted, job.documents_failed) == (
        "completed",
        len(good_keys),
        len(failed_keys) + 1,
    )

    # A triggered run may name any key: one no S3 request can address fails by itself.
    data, ocr = numbered_page(8)
    put_with_ocr(settings, "trigger/ünï code/€ 8.png", data, [ocr])
    triggered = digitize_now(
        random_model, keys=["../escape.pdf", "scans/./x.pdf", "trigger/ünï code/€ 8.png"]
    )
    assert triggered["status"] == "completed" and triggered["extracted"] == 1
    reasons = {f["key"]: f["reason"] for f in triggered["failures"]}
    assert set(reasons) == {"../escape.pdf", "scans/./x.pdf"}
    assert all("not a valid object key" in reason for reason in reasons.values())


# --- faults ------------------------------------------------------------------------------------


def test_worker_killed_mid_run_then_the_next_run_finishes_the_rest(
    prefect_api, docflow_env, random_model, monkeypatch, tmp_path
):
    """SIGKILL to the process running a run of 64 documents, mid-run (two chunks stored): its job is
    recognised as crashed once its claims expire, the next run takes what it left, and every
    document ends extracted exactly once."""
    ttl = 10
    settings = use_settings(monkeypatch, claim_ttl_seconds=str(ttl))
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    total = 64
    put_numbered_pages(settings, total, "soak/")

    log = tmp_path / "worker.log"
    parameters = {"model_version": str(random_model), "chunk_size": 8}
    worker = start_digitize_process(parameters, process_env(), log)
    try:
        extracted = "SELECT count(*) FROM documents WHERE status = 'extracted'"
        wait_for(lambda: query(url, extracted)[0][0] >= 16 or worker.poll() is not None)
        assert worker.poll() is None, log.read_text()[-3000:]
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()  # the one process this test started, by its pid; a no-op if gone
        worker.wait()
    done_before = query(url, extracted)[0][0]
    assert 0 < done_before < total
    [killed] = query(url, "SELECT id, status FROM jobs")
    assert killed.status == "running"  # nothing in a killed process can say otherwise

    # Its claims run out (it renewed them after each chunk it stored, until it died) ...
    live = "SELECT count(*) FROM documents WHERE claim_expires_at > now()"
    wait_for(lambda: query(url, live)[0][0] == 0, timeout=ttl + 30, every=0.5)
    # ... and the next run says so on its row, then does the rest.
    summary = digitize_now(random_model, chunk_size=16)
    assert summary["status"] == "completed" and summary["failed"] == 0
    assert summary["extracted"] == total - done_before

    [job] = query(url, "SELECT status, error FROM jobs WHERE id = :id", id=killed.id)
    assert job.status == "crashed" and "claim TTL" in job.error
    states = document_states(url)
    assert len(states) == total
    assert {(s.status, s.extractions) for s in states.values()} == {("extracted", 1)}
    per_job = query(url, "SELECT sum(documents_extracted) FROM jobs")
    assert per_job[0][0] == total  # no document was stored by both runs


def test_postgres_restart_during_a_run_is_retried_and_the_run_completes(
    prefect_api, docflow_env, random_model, monkeypatch, tmp_path, retry_log
):
    with spare_postgres(tmp_path) as postgres:
        settings = use_settings(monkeypatch, database_url=postgres.url)
        prepare_services(settings)
        put_numbered_pages(settings, 12, "pg/")
        with documents_locked(postgres.url) as wait_until_blocked:
            run = Background(lambda: digitize_now(random_model, chunk_size=4))
            wait_until_blocked()  # mid-transaction, in the middle of discovery
            postgres.stop()  # every connection dies, the run's and the lock's
            postgres.start()
        summary = run.result()

        assert summary["status"] == "completed" and summary["extracted"] == 12
        assert any("discover-and-claim" in line for line in retry_log.lines), retry_log.lines
        [job] = query(postgres.url, "SELECT * FROM jobs")
        assert job.status == "completed" and job.documents_extracted == 12
        restarted = query(postgres.url, "SELECT pg_postmaster_start_time()")[0][0]
        assert job.started_at < restarted < job.finished_at
        states = document_states(postgres.url)
        assert {(s.status, s.extractions) for s in states.values()} == {("extracted", 1)}


def test_s3_outage_is_retried_and_what_stays_unreadable_waits_for_the_next_run(
    prefect_api, docflow_env, random_model, monkeypatch, tmp_path, retry_log
):
    access, secret = "outage-test", "outage-" + os.urandom(8).hex()
    with spare_s3(tmp_path, access, secret) as s3:
        settings = use_settings(
            monkeypatch, s3_endpoint=s3.endpoint, s3_access_key=access, s3_secret_key=secret
        )
        url = settings.database_url.get_secret_value()
        prepare_services(settings)

        # A short outage, from just after the claims until the tasks have failed once.
        put_numbered_pages(settings, 6, "short/")
        with documents_locked(url) as wait_until_blocked:
            run = Background(lambda: digitize_now(random_model, prefix="short/", chunk_size=2))
            wait_until_blocked()
            s3.stop()
        wait_for(lambda: any("ocr-chunk" in line for line in retry_log.lines), timeout=60)
        s3.start()
        summary = run.result()
        assert summary["status"] == "completed"
        assert (summary["extracted"], summary["failed"], summary["released"]) == (6, 0, 0)

        # An outage longer than the retries: the documents go back to the queue, not to failed.
        put_numbered_pages(settings, 6, "long/", start=100)
        retry_log.lines.clear()
        with documents_locked(url) as wait_until_blocked:
            run = Background(lambda: digitize_now(random_model, prefix="long/", chunk_size=2))
            wait_until_blocked()
            s3.stop()
        summary = run.result()
        assert (summary["extracted"], summary["failed"], summary["released"]) == (0, 0, 6)
        states = {k: s for k, s in document_states(url).items() if k.startswith("long/")}
        assert {s.status for s in states.values()} == {"queued"}
        assert all("StorageUnavailable" in s.last_error for s in states.values())
        [job] = query(url, "SELECT * FROM jobs WHERE id = :id", id=summary["job_id"])
        assert job.status == "completed" and "cannot reach the server" in job.error
        # Each chunk's OCR was tried four times, with growing waits, before giving up.
        retries: dict[str, list[str]] = {}
        for line in retry_log.lines:
            task, _, marker = line.partition(": ")
            retries.setdefault(task, []).append(marker)
        assert len(retries) == 3 and all(name.startswith("ocr-chunk") for name in retries)
        tries = ["Retry 1/3", "Retry 2/3", "Retry 3/3", "Retries are exhausted"]
        assert all(seen == tries for seen in retries.values()), retries

        # The server is back: the next run extracts them, once each.
        s3.start()
        summary = digitize_now(random_model, prefix="long/")
        assert (summary["extracted"], summary["failed"]) == (6, 0)
        states = document_states(url)
        assert {(s.status, s.extractions) for s in states.values()} == {("extracted", 1)}


def test_two_runs_at_once_share_the_documents_without_overlap(
    prefect_api, docflow_env, random_model, tmp_path
):
    """Two worker processes start `digitize` on the same prefix and claim at the same moment
    (both held at their claim by the test's lock, then let go together): every document is
    extracted by exactly one of them."""
    from db.documents import DocumentObject, register_documents
    from db.session import session_scope
    from flows.clients import object_store, sessions

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    total = 80
    keys = put_numbered_pages(settings, total, "both/")
    # Registered beforehand (an earlier listing), so both runs go straight to claiming.
    store = object_store(settings)
    objects = []
    for key in keys:
        info = store.stat(settings.inbox_bucket, key)
        data = store.read_bytes(settings.inbox_bucket, key, settings.max_document_bytes)
        objects.append(
            DocumentObject(
                settings.inbox_bucket,
                key,
                hashlib.sha256(data).hexdigest(),
                len(data),
                "image/png",
                info.etag,
            )
        )
    with session_scope(sessions(settings)) as session:
        register_documents(session, objects)

    # Each may take 50 of the 80: both must get some, and together exactly all.
    parameters = {"model_version": str(random_model), "prefix": "both/", "chunk_size": 5}
    parameters["limit"] = 50
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    with documents_locked(url) as wait_until_blocked:
        workers = [start_digitize_process(parameters, process_env(), log) for log in logs]
        wait_until_blocked(runs=2)
    for worker, log in zip(workers, logs, strict=True):
        assert worker.wait(timeout=240) == 0, log.read_text()[-3000:]

    jobs = query(url, "SELECT id, status, documents_seen, documents_extracted FROM jobs")
    assert len(jobs) == 2 and {job.status for job in jobs} == {"completed"}
    assert sum(job.documents_extracted for job in jobs) == total
    assert sum(job.documents_seen for job in jobs) == total
    states = document_states(url)
    assert {(s.status, s.extractions) for s in states.values()} == {("extracted", 1)}
    # How the two runs split the work depends on how their claims interleave, which the
    # scheduler decides: each took some, neither more than its limit, and no document twice.
    by_job = query(url, "SELECT job_id, count(*) FROM extractions GROUP BY job_id")
    counts = [count for _, count in by_job]
    assert len(counts) == 2 and all(0 < count <= 50 for count in counts)
    assert sum(counts) == total


def test_finetune_crash_half_way_keeps_the_active_model_and_records_the_failure(
    prefect_api, docflow_env, random_model, tmp_path
):
    """Fine-tuning from a base whose weights file was cut off (a half-written upload) fails
    in training, after its run was recorded: the run is marked failed with the reason, no
    version is added, and the active model stays active."""
    from test_flows import register_active

    from docformer.labelled import write_labelled_example
    from docformer.synth import render_document
    from flows.cli import main
    from flows.finetune import finetune

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    register_active(settings, random_model)
    half_written = tmp_path / "half-written"
    shutil.copytree(random_model, half_written)
    weights = half_written / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    from db.model_versions import register_model_version
    from db.session import session_scope
    from flows.clients import sessions

    with session_scope(sessions(settings)) as session:
        register_model_version(session, "half-written", str(half_written))
    folder = tmp_path / "labelled"
    for index in range(3):
        document = render_document("receipt", seed=5, index=index)
        write_labelled_example(
            folder, document.name, document.encode(), document.fields, [document.ocr]
        )
    assert main(["labels", "import", str(folder)]) == 0
    versions_before = query(url, "SELECT id, name, status FROM model_versions ORDER BY id")

    with pytest.raises(Exception, match="(?i)safetensor|header|deserializ"):
        finetune(base_model_version="half-written", fields=FIELDS, max_steps=2, batch_size=2)

    [run] = query(url, "SELECT status, error, result_version_id FROM training_runs")
    assert run.status == "failed" and run.error and run.result_version_id is None
    assert query(url, "SELECT id, name, status FROM model_versions ORDER BY id") == versions_before
    [(active,)] = query(url, "SELECT name FROM model_versions WHERE status = 'active'")
    assert active == "tiny-base"
    [job] = query(url, "SELECT status, error FROM jobs WHERE kind = 'finetune'")
    assert job.status == "failed" and job.error == run.error


def test_a_job_is_abandoned_only_when_its_claims_ran_out(empty_database_url):
    """The rule the next run applies to spot dead runs, case by case: claims all expired, or
    no claims and older than the TTL; a run renewing its claims is never taken for dead."""
    from db.documents import DocumentObject, register_documents
    from db.jobs import abandoned_jobs, claim_documents, mark_crashed_jobs, open_job, renew_claims
    from db.migrate import upgrade
    from db.session import make_engine, make_session_factory, session_scope

    upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        objects = [
            DocumentObject("inbox", f"{i}.png", f"{i:064x}", 1, "image/png") for i in range(4)
        ]
        ids = [d.id for d in register_documents(session, objects)]
        live, dead, idle, young = (open_job(session, "digitize") for _ in range(4))
        claim_documents(session, live, 2, ttl_seconds=60, document_ids=ids[:2])
        claim_documents(session, dead, 2, ttl_seconds=60, document_ids=ids[2:])
        session.execute(
            sa.text(
                "UPDATE documents SET claim_expires_at = now() - interval '1 second' "
                "WHERE claimed_by_job_id IN (:live, :dead)"
            ),
            {"live": live, "dead": dead},
        )
        session.execute(
            sa.text("UPDATE jobs SET started_at = now() - interval '1 hour' WHERE id = :id"),
            {"id": idle},
        )
    with session_scope(sessions) as session:
        # A live run renews as it stores chunks; only claims past half their time move.
        assert renew_claims(session, live, ttl_seconds=60) == 2
        assert renew_claims(session, live, ttl_seconds=60) == 0
        found = abandoned_jobs(session, "digitize", ttl_seconds=60, exclude=[young])
        assert found == sorted([dead, idle])
        assert abandoned_jobs(session, "finetune", ttl_seconds=60) == []
        mark_crashed_jobs(session, job_ids=found, error="lost")
    rows = query(empty_database_url, "SELECT status, claimed_by_job_id FROM documents ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("processing", live),
        ("processing", live),
        ("queued", None),
        ("queued", None),
    ]
    engine.dispose()
