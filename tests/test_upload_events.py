"""Upload events (reliability item 12), on real PostgreSQL, SeaweedFS and a throwaway Prefect API:
how many runs the `docflow.document.uploaded` events start at once, what one `docflow upload`
emits, and what the triggered flow accepts from an event's payload."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from conftest import ROOT
from test_flows import prepare_services, synth_receipts

from flows.cli import main
from flows.settings import Settings

BIN = Path(sys.executable).parent
DEPLOYMENT = "digitize-on-upload"


def docflow(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


def count(database_url: str, table: str) -> int:
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        value = conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar()
    engine.dispose()
    return value


def run_logs(flow_run_id) -> list[str]:
    """The log lines of a flow run as the Prefect API stores them (what its UI shows)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


# --- how many events and runs -------------------------------------------------------------------


def test_one_upload_command_sends_one_event_naming_every_key(prefect_api, docflow_env, tmp_path):
    """`docflow upload` of three files emits one event naming all three (before: also one, but
    nothing split a huge upload, whose event Prefect would refuse as too large); a huge upload
    is split in order into events of at most 1000 keys and about 1 MB."""
    from flows.cli.documents import UPLOAD_EVENT_KEYS, upload_event_payloads

    files = []
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\n" + name.encode())
        files.append(str(tmp_path / name))
    code, out = docflow("upload", *files, "--prefix", "batch/")
    assert code == 0, out
    assert len([line for line in out.splitlines() if line.startswith("event ")]) == 1

    bucket = docflow_env.inbox_bucket
    keys = ["batch/a.png", "batch/b.png", "batch/c.png"]
    assert upload_event_payloads(bucket, keys) == [{"bucket": bucket, "keys": keys}]

    many = [f"scans/{i:05d}.pdf" for i in range(2 * UPLOAD_EVENT_KEYS + 500)]
    payloads = upload_event_payloads(bucket, many)
    assert len(payloads) == 3 and all(p["bucket"] == bucket for p in payloads)
    assert [key for p in payloads for key in p["keys"]] == many
    long_keys = ["k/" + "x" * 1000 + f"{i}" for i in range(UPLOAD_EVENT_KEYS)]
    by_size = upload_event_payloads(bucket, long_keys)
    assert len(by_size) == 2 and [k for p in by_size for k in p["keys"]] == long_keys


def test_the_upload_deployment_runs_at_most_its_limit_at_once(prefect_api, tmp_path):
    """`prefect deploy` of the `digitize-on-upload` deployment of prefect.yaml gives it a
    concurrency limit with ENQUEUE: of limit + 2 runs its events would create, the server lets
    `limit` go to Pending (a worker process each) and sends the others back to wait as
    Scheduled/AwaitingConcurrencySlot (before: no limit, every run went, each loading the
    models). Its trigger maps the event's payload onto the flow's two parameters."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Cancelled, Pending

    from flows.deployments import ensure_work_pools

    declared = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    [spec] = [d for d in declared if d["name"] == DEPLOYMENT]
    limit = spec["concurrency_limit"]["limit"]
    assert isinstance(limit, int) and limit >= 1
    assert spec["concurrency_limit"]["collision_strategy"] == "ENQUEUE"

    ensure_work_pools(("docflow-cpu",))
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "DOCFLOW_PROJECT_DIR": str(ROOT),
    }
    deployed = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", "deploy", "--name", DEPLOYMENT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"digitize-upload/{DEPLOYMENT}")
        assert deployment.entrypoint == "flows/digitize.py:digitize_upload"
        assert deployment.global_concurrency_limit.limit == limit
        assert deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
        schema = deployment.parameter_openapi_schema
        assert set(schema["properties"]) == {"bucket", "keys"}
        assert set(schema["required"]) == {"bucket", "keys"}

        [automation] = client.read_resource_related_automations(
            f"prefect.deployment.{deployment.id}"
        )
        assert automation.trigger.expect == {"docflow.document.uploaded"}
        [action] = automation.actions
        assert action.deployment_id == deployment.id
        assert set(action.parameters) == {"bucket", "keys"}

        runs = [
            client.create_flow_run_from_deployment(
                deployment.id, parameters={"bucket": "docflow-inbox", "keys": [f"k{i}.pdf"]}
            )
            for i in range(limit + 2)
        ]
        try:
            results = [client.set_flow_run_state(run.id, Pending()) for run in runs]
            pending = [r for r in results if r.state.is_pending()]
            waiting = [r for r in results if r.state.name == "AwaitingConcurrencySlot"]
            assert len(pending) == limit
            assert len(waiting) == 2 and all(r.state.is_scheduled() for r in waiting)
        finally:
            for run in runs:
                client.set_flow_run_state(run.id, Cancelled(), force=True)


# --- what the triggered flow accepts ------------------------------------------------------------


def test_an_event_naming_another_bucket_is_refused_and_processes_nothing(prefect_api, docflow_env):
    """An event naming a bucket that is neither the inbox nor in DOCFLOW_UPLOAD_BUCKETS: the run
    fails with `UploadRefused`, its log says why, and nothing of the bucket is read, registered
    or claimed; no job is opened (before: the flow read whatever bucket the event named)."""
    from flows.clients import object_store
    from flows.digitize import UploadRefused, digitize_upload, upload_refusal

    settings = docflow_env
    prepare_services(settings)
    foreign = f"foreign-{uuid.uuid4().hex[:8]}"
    store = object_store(settings)
    store.ensure_bucket(foreign)
    [receipt] = synth_receipts(1)
    store.put_bytes(foreign, "scans/receipt.png", receipt.encode())

    state = digitize_upload(bucket=foreign, keys=["scans/receipt.png"], return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, UploadRefused)
    assert f"bucket {foreign!r}" in str(error) and "DOCFLOW_UPLOAD_BUCKETS" in str(error)
    logs = run_logs(state.state_details.flow_run_id)
    assert any("upload event refused" in line and foreign in line for line in logs), logs
    url = settings.database_url.get_secret_value()
    assert count(url, "jobs") == 0
    assert count(url, "documents") == 0 and count(url, "document_sources") == 0

    # The allow-list: the inbox always, plus the buckets DOCFLOW_UPLOAD_BUCKETS names.
    assert settings.allowed_upload_buckets == {settings.inbox_bucket}
    listed = Settings(inbox_bucket="inbox", upload_buckets=f" scans-2026 ,{foreign},")
    assert listed.allowed_upload_buckets == {"inbox", "scans-2026", foreign}
    assert upload_refusal(listed.allowed_upload_buckets, foreign, ["scans/receipt.png"]) is None


def test_an_event_whose_keys_no_request_can_address_is_refused(prefect_api, docflow_env):
    """Empty, blank and `.`/`..` keys are refused before any request (the store's own name
    check, `flows.storage.check_name`): an event naming only such keys fails saying so for
    each, with no job; an empty key now says it is empty (before: a bare ValueError, no
    reason)."""
    from flows.digitize import UploadRefused, digitize_upload
    from flows.storage import InvalidName, check_name

    settings = docflow_env
    prepare_services(settings)
    bad = ["", "   ", "../escape.pdf", "a/./b.pdf"]
    for key in bad:
        with pytest.raises(InvalidName):
            check_name(settings.inbox_bucket, key)
    check_name(settings.inbox_bucket, "scans/a..b.pdf")  # `..` inside a name is a name

    state = digitize_upload(bucket=settings.inbox_bucket, keys=bad, return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, UploadRefused)
    assert "cannot be empty or blank" in str(error) and "'..' path segment" in str(error)
    state = digitize_upload(bucket=settings.inbox_bucket, keys=[], return_state=True)
    assert isinstance(state.result(raise_on_failure=False), UploadRefused)
    assert count(settings.database_url.get_secret_value(), "jobs") == 0


def test_a_run_for_keys_another_run_holds_claims_nothing_and_loads_no_model(
    prefect_api, docflow_env
):
    """Two events naming the same documents (an upload retried, a client emitting twice): while
    the first run holds them, the second claims none, OCRs nothing, loads no model and
    completes; the claims stay the first run's."""
    from db.documents import DocumentObject, register_documents
    from db.jobs import claim_documents, open_job
    from db.models import Document
    from db.session import session_scope
    from docformer import extraction
    from flows.clients import object_store, sessions
    from flows.demo import upload_documents
    from flows.digitize import digitize_upload

    settings = docflow_env
    prepare_services(settings)
    receipts = synth_receipts(2, seed=12)
    keys = upload_documents(settings, receipts, prefix="up/")
    store = object_store(settings)
    with session_scope(sessions()) as session:  # the first run: registered and claimed
        first_job = open_job(session, "digitize", parameters={"keys": keys})
        registered = register_documents(
            session,
            [
                DocumentObject(
                    bucket=settings.inbox_bucket,
                    key=key,
                    sha256=hashlib.sha256(receipt.encode()).hexdigest(),
                    size=len(receipt.encode()),
                    media_type="image/png",
                    etag=store.stat(settings.inbox_bucket, key).etag,
                )
                for key, receipt in zip(keys, receipts, strict=True)
            ],
        )
        ids = [r.id for r in registered]
        assert len(claim_documents(session, first_job, 10, 3600, document_ids=ids)) == 2
    models_loaded = len(extraction._cache)

    summary = digitize_upload(bucket=settings.inbox_bucket, keys=keys)
    assert summary["status"] == "completed" and summary["job_id"] != first_job
    assert summary["documents"] == 0 and summary["extracted"] == 0
    assert summary["pages_ocred"] == 0 and summary["pages_cached"] == 0
    assert len(extraction._cache) == models_loaded
    with sessions()() as session:
        holders = {session.get(Document, i).claimed_by_job_id for i in ids}
    assert holders == {first_job}
