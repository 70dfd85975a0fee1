"""The deployment files: compose.yaml and the Dockerfile are checked against the code (no
container engine here), and the local scripts start a real Prefect server and worker."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
import uuid
from functools import cache
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
import yaml
from conftest import LOCAL, ROOT
from helpers_services import free_port_block

from flows.cli import build_parser
from flows.settings import Settings

DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service_environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "KEY=value" form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def built_from_our_dockerfile(service: dict) -> bool:
    return "build" in service


def test_the_production_services_are_there(compose):
    assert {"minio", "postgres", "prefect-server", "worker-cpu", "worker-gpu"} <= set(
        compose["services"]
    )
    workers = {name: s for name, s in compose["services"].items() if name.startswith("worker-")}
    pools = {s["command"][s["command"].index("--pool") + 1] for s in workers.values()}
    assert pools == {"docflow-cpu", "docflow-gpu"}
    # every work pool that prefect.yaml deploys to has a worker
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    assert {d["work_pool"]["name"] for d in deployments} <= pools
    gpu = compose["services"]["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    # the Prefect server keeps its state in PostgreSQL, not SQLite
    server_env = service_environment(compose["services"]["prefect-server"])
    assert server_env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")


def test_referenced_files_exist(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert context.is_dir(), name
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
        for env_file in service.get("env_file", []):
            assert (DEPLOY / env_file).exists(), f"{name}: {env_file}"


def test_docflow_variables_are_settings_fields(compose):
    fields = {f"DOCFLOW_{name.upper()}" for name in Settings.model_fields}
    seen = set()
    for name, service in compose["services"].items():
        for key in service_environment(service):
            if key.startswith("DOCFLOW_"):
                seen.add(key)
                assert key in fields, f"{name} sets {key}, which Settings does not read"
    assert {"DOCFLOW_DATABASE_URL", "DOCFLOW_S3_ENDPOINT", "DOCFLOW_S3_SECRET_KEY"} <= seen
    # and the values parse: build Settings from the workers' environment with dummy secrets
    env = service_environment(compose["services"]["worker-cpu"])
    resolved = {
        k: INTERPOLATION.sub("placeholder", v) for k, v in env.items() if k.startswith("DOCFLOW_")
    }
    settings = Settings(**{k.removeprefix("DOCFLOW_").lower(): v for k, v in resolved.items()})
    assert settings.s3_endpoint == "minio:9000" and settings.device == "cpu"


def test_no_secret_is_written_into_the_files(compose):
    for name, service in compose["services"].items():
        for key, value in service_environment(service).items():
            if re.search("PASSWORD|SECRET", key):
                assert INTERPOLATION.fullmatch(value), (
                    f"{name}: {key} must come from the environment"
                )
            credentials = re.match(r"\w[\w+]*://[^:/@]+:([^@]+)@", value)
            if credentials:
                assert INTERPOLATION.fullmatch(credentials.group(1)), f"{name}: password in {key}"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


@cache
def prefect_help(*subcommand: str) -> str:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), *subcommand, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_commands_exist(compose):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, service in compose["services"].items():
        if not built_from_our_dockerfile(service):
            continue  # the images' own commands (minio, postgres)
        command = service["command"]
        command = shlex.split(command) if isinstance(command, str) else command
        if command[0] == "docflow":
            assert "docflow" in scripts
            build_parser().parse_args(command[1:])  # exits on an unknown subcommand
        elif command[0] == "prefect":
            words = [w for w in command[1:] if not w.startswith("-")]
            options = [w for w in command[1:] if w.startswith("--") and w != "--no-prompt"]
            path = [w for w in words if w in {"server", "worker", "start", "deploy"}]
            help_text = prefect_help(*(["--no-prompt"] if "--no-prompt" in command else []), *path)
            for option in options:
                assert option in help_text, f"{name}: prefect {' '.join(path)} has no {option}"
        else:
            pytest.fail(f"{name} runs {command[0]!r}, which the image does not install")


def test_dockerfile_copies_files_that_exist():
    lines = re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines()
    copies = [shlex.split(line)[1:] for line in lines if line.strip().upper().startswith("COPY ")]
    assert copies
    for args in copies:
        sources = [a for a in args if not a.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the checkout"
    # the image provides the commands compose runs
    text = DOCKERFILE.read_text()
    assert "pip install" in text and "-c constraints.txt ." in text


@pytest.mark.parametrize("script", sorted(LOCAL.glob("*.sh")), ids=lambda p: p.name)
def test_local_scripts_are_valid_and_need_no_curl(script):
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    code = "\n".join(line.split("#", 1)[0] for line in script.read_text().splitlines())
    assert not re.search(r"\b(curl|wget)\b", code)  # a fresh machine may have neither
    usage = subprocess.run([str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


@pytest.mark.e2e
def test_prefect_server_and_worker_scripts(pg_server, tmp_path):
    """prefect-server.sh on a PostgreSQL database it creates, then a worker on a new pool."""
    port = free_port_block(1)
    database = f"prefect_{uuid.uuid4().hex[:8]}"
    db_url = pg_server.replace("+psycopg2", "+asyncpg").rsplit("/", 1)[0] + f"/{database}"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PREFECT_DB_URL": db_url,
        "PREFECT_PORT": str(port),
        "PREFECT_DIR": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "POOL": f"test-{uuid.uuid4().hex[:6]}",
        "WORKER_DIR": str(tmp_path / "worker"),
    }

    def run(script: str, action: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(LOCAL / script), action], env=env, capture_output=True, text=True, timeout=180
        )

    try:
        started = run("prefect-server.sh", "start")
        assert started.returncode == 0, (
            started.stderr + (tmp_path / "prefect" / "server.log").read_text()
        )
        assert started.stdout.strip() == f"http://127.0.0.1:{port}/api"
        server_pid = int((tmp_path / "prefect" / "server.pid").read_text())
        listening = {
            c.laddr
            for p in [
                psutil.Process(server_pid),
                *psutil.Process(server_pid).children(recursive=True),
            ]
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening and {a.ip for a in listening} == {"127.0.0.1"}
        # the server's tables live in the PostgreSQL database the script created, with pg_trgm
        engine = sa.create_engine(pg_server.rsplit("/", 1)[0] + f"/{database}")
        with engine.connect() as conn:
            assert conn.execute(
                sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
            ).first()
            assert conn.execute(sa.text("SELECT to_regclass('flow_run')")).scalar() is not None
        engine.dispose()

        worker = run("prefect-worker.sh", "start")
        assert worker.returncode == 0, worker.stderr
        assert env["POOL"] in worker.stdout
        worker_pid = int((tmp_path / "worker" / "worker.pid").read_text())
        assert run("prefect-worker.sh", "status").returncode == 0

        assert run("prefect-worker.sh", "stop").returncode == 0
        assert not psutil.pid_exists(worker_pid)
        assert run("prefect-server.sh", "stop").returncode == 0
        assert not psutil.pid_exists(server_pid)
        assert run("prefect-server.sh", "status").returncode == 3
    finally:
        run("prefect-worker.sh", "stop")
        run("prefect-server.sh", "stop")
