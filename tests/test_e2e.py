"""End to end with a real Prefect server (on PostgreSQL) and a process worker: `docflow deploy`
applies prefect.yaml, `docflow upload` emits the event, the trigger starts `digitize` for just
that upload, the worker runs it, and its fields land in PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import test_flows
from conftest import LOCAL, ROOT
from helpers_services import free_port_block
from test_flows import prepare_services, register_active, seed_ocr_cache

receipts = test_flows.receipts
tiny_model = test_flows.tiny_model

BIN = Path(sys.executable).parent


@pytest.fixture
def prefect_server(pg_server, tmp_path):
    """A `prefect server` on its own PostgreSQL database, started by deploy/local's script."""
    port = free_port_block(1)
    database = f"prefect_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PREFECT_DB_URL": pg_server.replace("+psycopg2", "+asyncpg").rsplit("/", 1)[0]
        + f"/{database}",
        "PREFECT_PORT": str(port),
        "PREFECT_DIR": str(tmp_path / "prefect"),
    }
    script = str(LOCAL / "prefect-server.sh")
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True)


def run(*argv: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    result = subprocess.run(
        argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.e2e
def test_upload_event_triggers_a_deployed_run_on_a_worker(
    prefect_server, docflow_env, receipts, tiny_model, tmp_path
):
    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    register_active(settings, tiny_model)
    seed_ocr_cache(settings, receipts)  # OCR itself is tested elsewhere; this tests the wiring
    env = {
        **os.environ,  # DOCFLOW_* of this test's database and buckets
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PREFECT_API_URL": prefect_server,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "DOCFLOW_PROJECT_DIR": str(ROOT),
        "POOL": "docflow-cpu",
        "WORKER_DIR": str(tmp_path / "worker"),
    }

    deployed = run(str(BIN / "docflow"), "deploy", env=env)
    assert "digitize-on-upload" in deployed.stdout
    nightly = run(
        str(BIN / "prefect"), "deployment", "inspect", "digitize/digitize-nightly", env=env
    )
    assert "0 2 * * *" in nightly.stdout and "Europe/London" in nightly.stdout

    worker = str(LOCAL / "prefect-worker.sh")
    run(worker, "start", env=env)
    try:
        files = []
        for document in receipts[:2]:
            path = tmp_path / f"{document.name}{document.suffix}"
            path.write_bytes(document.encode())
            files.append(str(path))
        uploaded = run(str(BIN / "docflow"), "upload", *files, env=env)
        assert "event docflow.document.uploaded" in uploaded.stdout

        engine = sa.create_engine(url)
        deadline = time.monotonic() + 180
        count = 0
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                count = conn.execute(
                    sa.text("SELECT count(DISTINCT document_id) FROM current_fields")
                ).scalar()
                job = conn.execute(sa.text("SELECT status, parameters FROM jobs")).first()
            if count == 2 and job is not None and job.status == "completed":
                break
            time.sleep(2)
        engine.dispose()
        log = (tmp_path / "worker" / "worker.log").read_text()
        assert count == 2, log[-4000:]
        # the run took exactly the uploaded keys from the event
        assert sorted(job.parameters["keys"]) == sorted(Path(f).name for f in files)
        expected = {
            f"{d.name}{d.suffix}": {f: d.fields[f] for f in test_flows.FIELDS} for d in receipts[:2]
        }
        assert test_flows.current_values(url) == expected
    finally:
        subprocess.run([worker, "stop"], env=env, capture_output=True)
