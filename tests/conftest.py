"""Real services for the test run: Debian's PostgreSQL 15 and SeaweedFS, started by the
project's own scripts in `deploy/local/` under a temporary directory, on free loopback ports.
Nothing here is a mock: every test that touches a database or a bucket talks to a real server.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers_services import free_port_block, script_env

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "deploy" / "local"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> Iterator[str]:
    """URL of the `postgres` maintenance database of a PostgreSQL 15 started for this run."""
    data_dir = tmp_path_factory.mktemp("postgres")
    # The postgres user must reach its data dir when we are root: open every folder above it
    # up to the system's temporary folder (with pytest-xdist one more level than without).
    for folder in data_dir.parents:
        if folder == Path(tempfile.gettempdir()) or folder == Path(folder.anchor):
            break
        os.chmod(folder, 0o755)
    port = str(free_port_block(1))
    env = script_env(PGDATA_DIR=str(data_dir), PGPORT=port, PGDATABASES="postgres")
    subprocess.run([str(LOCAL / "postgres.sh"), "start"], env=env, check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([str(LOCAL / "postgres.sh"), "stop"], env=env, check=False)


@pytest.fixture
def empty_database_url(pg_server: str) -> Iterator[str]:
    """A new, empty database for one test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    # pre-ping: a connection pooled at set-up may be gone by tear-down on a loaded machine
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = pg_server.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """An empty database migrated to the newest schema."""
    from db import migrate

    migrate.upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
def engine(database_url: str):
    """An engine on `database_url`, disposed afterwards."""
    from db.session import make_engine

    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine):
    """A session on the migrated test database."""
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        yield session


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    base_port: int
    data_dir: Path


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server on 127.0.0.1 that requires credentials."""
    data_dir = tmp_path_factory.mktemp("seaweedfs")
    base = free_port_block(4)
    access, secret = "docflow-test", secrets.token_hex(16)
    env = script_env(
        S3_DIR=str(data_dir),
        S3_BASE_PORT=str(base),
        AWS_ACCESS_KEY_ID=access,
        AWS_SECRET_ACCESS_KEY=secret,
    )
    out = subprocess.run(
        [str(LOCAL / "seaweedfs.sh"), "start"], env=env, check=True, capture_output=True, text=True
    )
    try:
        yield S3Server(out.stdout.strip(), access, secret, base, data_dir)
    finally:
        subprocess.run([str(LOCAL / "seaweedfs.sh"), "stop"], env=env, check=False)


@pytest.fixture
def docflow_env(monkeypatch, empty_database_url: str, s3_server: S3Server, tmp_path: Path):
    """DOCFLOW_* variables pointing at the real test services, with buckets unique to the test.

    Returns a fresh `Settings` built from them.
    """
    from flows.settings import Settings, get_settings

    suffix = uuid.uuid4().hex[:8]
    values = {
        "DOCFLOW_HOME": str(tmp_path / "home"),
        "DOCFLOW_DATABASE_URL": empty_database_url,
        "DOCFLOW_S3_ENDPOINT": s3_server.endpoint,
        "DOCFLOW_S3_ACCESS_KEY": s3_server.access_key,
        "DOCFLOW_S3_SECRET_KEY": s3_server.secret_key,
        "DOCFLOW_INBOX_BUCKET": f"inbox-{suffix}",
        "DOCFLOW_ARTIFACT_BUCKET": f"artifacts-{suffix}",
        "DOCFLOW_ARCHIVE_BUCKET": f"archive-{suffix}",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield Settings()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    """A throwaway Prefect API (temporary database) per test module, with docflow's extraction
    limit at one slot as `docflow deploy` creates it: each module's flow runs, artifacts and
    limits start clean. (One API for the whole run, tried, did not make the suite faster.)"""
    from prefect.testing.utilities import prefect_test_harness

    from flows.deployments import ensure_concurrency_limits

    with prefect_test_harness(server_startup_timeout=120):
        ensure_concurrency_limits()
        yield
