"""`docflow up | status | down` on the embedded default: real embedded PostgreSQL, real SeaweedFS,
started as detached processes by the real command, on free loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from helpers_services import free_port_block

from embedded.processes import LOOPBACK, port_is_free
from embedded.seaweedfs import SEAWEEDFS_PORT_FLAGS, seaweedfs_ports
from flows.storage import ObjectStore

DOCFLOW = Path(sys.executable).parent / "docflow"


@pytest.fixture
def embedded(tmp_path: Path):
    """Environment for an embedded installation under tmp_path, stopped again afterwards."""
    base = free_port_block(1 + len(SEAWEEDFS_PORT_FLAGS))
    password = "pw-" + uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCFLOW_", "PREFECT_"))}
    env.update(
        DOCFLOW_HOME=str(tmp_path / "home"),
        # A password in the URL gives the embedded server password authentication.
        DOCFLOW_DATABASE_URL=f"postgresql+psycopg2://docflow:{password}@127.0.0.1:{base}/docflow",
        DOCFLOW_S3_ENDPOINT=f"127.0.0.1:{base + 1}",
        DOCFLOW_S3_SECRET_KEY="s3-" + uuid.uuid4().hex,
        DOCFLOW_INBOX_BUCKET="inbox-test",
        DOCFLOW_ARTIFACT_BUCKET="artifacts-test",
    )
    try:
        yield env
    finally:
        docflow(env, "down")


def docflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [str(DOCFLOW)] if DOCFLOW.exists() else [sys.executable, "-m", "flows.cli"]
    return subprocess.run(
        command + list(args), env=env, capture_output=True, text=True, timeout=180
    )


def started_pids(env: dict[str, str]) -> dict[str, int]:
    run = Path(env["DOCFLOW_HOME"]) / "run"
    return {p.stem: int(p.read_text()) for p in run.glob("*.pid")}


def test_up_status_down_up_keeps_data(embedded):
    env = embedded
    url = env["DOCFLOW_DATABASE_URL"]
    password = sa.engine.make_url(url).password
    pg_port = sa.engine.make_url(url).port
    s3_port = int(env["DOCFLOW_S3_ENDPOINT"].rsplit(":", 1)[1])

    up = docflow(env, "up")
    assert up.returncode == 0, up.stderr
    assert "PostgreSQL: started" in up.stdout and "SeaweedFS: started" in up.stdout

    # `up` has exited; its servers keep running in sessions of their own.
    pids = started_pids(env)
    assert set(pids) == {"postgres", "seaweedfs"}
    for pid in pids.values():
        assert psutil.pid_exists(pid) and os.getsid(pid) != os.getsid(0)

    # They listen on the loopback address only, on the ports the settings name.
    listening = set()
    for pid in pids.values():
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                listening.add(conn.laddr)
    assert {addr.ip for addr in listening} == {LOOPBACK}
    assert {addr.port for addr in listening} == {pg_port, *seaweedfs_ports(s3_port).values()}

    status = docflow(env, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"127.0.0.1:{pg_port}/docflow" in status.stdout and "ok   S3" in status.stdout
    assert password not in status.stdout + status.stderr + up.stdout + up.stderr
    assert env["DOCFLOW_S3_SECRET_KEY"] not in status.stdout + up.stdout

    # `up` applied the migrations: the database has a revision
    current = docflow(env, "db", "current")
    assert current.returncode == 0 and current.stdout.strip(), current.stderr

    # the password is enforced, and the buckets exist
    wrong = sa.create_engine(sa.engine.make_url(url).set(password="wrong"))
    with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
        wrong.connect()
    store = ObjectStore(env["DOCFLOW_S3_ENDPOINT"], "docflow", env["DOCFLOW_S3_SECRET_KEY"])
    assert {"inbox-test", "artifacts-test"} <= set(store.list_buckets())

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE survivor (note text)"))
        conn.execute(sa.text("INSERT INTO survivor VALUES ('still here')"))
    engine.dispose()
    store.put_bytes("inbox-test", "scans/page-1.png", b"scan bytes")

    again = docflow(env, "up")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout and started_pids(env) == pids

    down = docflow(env, "down")
    assert down.returncode == 0, down.stderr
    assert not psutil.pid_exists(pids["seaweedfs"]) and not psutil.pid_exists(pids["postgres"])
    assert started_pids(env) == {}
    assert docflow(env, "status").returncode == 1
    assert port_is_free(pg_port) and port_is_free(s3_port)

    up = docflow(env, "up")
    assert up.returncode == 0, up.stderr
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT note FROM survivor")).scalar_one() == "still here"
    engine.dispose()
    assert store.read_bytes("inbox-test", "scans/page-1.png", max_bytes=100) == b"scan bytes"


def test_port_taken_by_another_program_is_named(embedded):
    s3_port = int(embedded["DOCFLOW_S3_ENDPOINT"].rsplit(":", 1)[1])
    taken = seaweedfs_ports(s3_port)["filer.port"]
    with socket.socket() as other:
        other.bind((LOOPBACK, taken))
        other.listen()
        result = docflow(embedded, "up")
    assert result.returncode == 1
    assert f"port {taken}" in result.stderr and "Traceback" not in result.stderr
    assert f"pid {os.getpid()} (" in result.stderr  # the holder is named: this test's process
    assert started_pids(embedded) == {}  # the check comes before anything starts


def test_status_and_down_when_nothing_runs(embedded):
    status = docflow(embedded, "status")
    assert status.returncode == 1 and "DOWN PostgreSQL" in status.stdout
    down = docflow(embedded, "down")
    assert down.returncode == 0 and "not running" in down.stdout


def test_seaweedfs_ports_are_a_block_above_the_s3_port():
    ports = seaweedfs_ports(28333)
    assert ports["s3.port"] == 28333
    assert sorted(ports.values()) == list(range(28333, 28333 + len(SEAWEEDFS_PORT_FLAGS)))


def test_help_is_fast_and_lists_commands():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flows.cli", "--help"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    for command in ("up", "down", "status", "db"):
        assert f"    {command} " in result.stdout
    # nothing heavy is imported just to print the help
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    assert not imported & {"prefect", "sqlalchemy", "minio", "torch", "pydantic"}


def test_ephemeral_prefect_api_first_start_under_load(tmp_path: Path):
    """The first start of the ephemeral API (an empty PREFECT_HOME: its SQLite database is
    created and migrated) succeeds with the other core busy, through the same environment and
    start-up call `docflow run` and `docflow demo` use."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCFLOW_", "PREFECT_"))}
    env["DOCFLOW_HOME"] = str(tmp_path / "home")
    script = (
        "from embedded.prefect_env import apply_prefect_environment\n"
        "from flows.settings import Settings\n"
        "apply_prefect_environment(Settings())\n"
        "from flows.deployments import ensure_concurrency_limits, start_api\n"
        "start_api()\n"
        "ensure_concurrency_limits()\n"
    )
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
        )
    finally:
        busy.kill()
        busy.wait()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "starting the local (ephemeral) API" in result.stdout
    assert (tmp_path / "home" / "prefect").is_dir()
