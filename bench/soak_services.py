"""The services of `bench.soak`, started for it alone with the project's own scripts.

PostgreSQL 15 (`deploy/local/postgres.sh`), SeaweedFS (`deploy/local/seaweedfs.sh`) and a real
`prefect server` on that PostgreSQL (`deploy/local/prefect-server.sh`), as the end-to-end test
starts them, under one temporary folder on free loopback ports. Workers are Prefect process
workers on the `docflow-cpu` pool, started like `deploy/local/prefect-worker.sh` starts one
(its own session, a log, ready once it says "started!") but with `--limit 1`: a worker runs
one flow run at a time, so a second run created while the first is running goes to another
worker, and killing one worker takes exactly one run down with it.

Nothing here imports Prefect: the caller sets PREFECT_API_URL and the DOCFLOW_* variables from
`Services` before it imports `prefect` or `flows`, which read them once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import ROOT
from tests.helpers_services import free_port_block, script_env

LOCAL = ROOT / "deploy" / "local"
BIN = Path(sys.executable).parent
POOL = "docflow-cpu"
DEPLOYMENT = "digitize/soak"

# The deployment the soak runs go through: the `digitize` flow of prefect.yaml, with its pull
# step, on its CPU pool, without the nightly schedule (a 02:00 run would join the soak).
PREFECT_FILE = """\
name: docflow-soak
prefect-version: 3.8.0
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{ $DOCFLOW_PROJECT_DIR }}"
deployments:
  - name: soak
    description: digitize, for bench.soak (no schedule, no trigger)
    entrypoint: flows/digitize.py:digitize
    work_pool:
      name: docflow-cpu
    parameters: {}
    tags: [docflow, soak]
"""


def run_script(name: str, action: str, env: dict[str, str], check: bool = True) -> str:
    done = subprocess.run(
        [str(LOCAL / name), action], env=env, capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{name} {action} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout.strip()


@dataclass
class Services:
    """The running services; `environment()` is what the flows, workers and this process use."""

    folder: Path
    pg_port: int
    s3_base_port: int
    s3_access_key: str
    s3_secret_key: str
    prefect_port: int
    started: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.pg_port}/docflow"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    def _env(self, script: str) -> dict[str, str]:
        if script == "postgres.sh":
            return script_env(
                PGDATA_DIR=str(self.folder / "postgres"),
                PGPORT=str(self.pg_port),
                PGDATABASES="docflow",
            )
        if script == "seaweedfs.sh":
            return script_env(
                S3_DIR=str(self.folder / "seaweedfs"),
                S3_BASE_PORT=str(self.s3_base_port),
                AWS_ACCESS_KEY_ID=self.s3_access_key,
                AWS_SECRET_ACCESS_KEY=self.s3_secret_key,
            )
        return script_env(
            PREFECT_DB_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{self.pg_port}/prefect",
            PREFECT_PORT=str(self.prefect_port),
            PREFECT_DIR=str(self.folder / "prefect"),
        )

    def environment(self) -> dict[str, str]:
        return {
            "DOCFLOW_HOME": str(self.folder / "home"),
            "DOCFLOW_DATABASE_URL": self.database_url,
            "DOCFLOW_S3_ENDPOINT": f"127.0.0.1:{self.s3_base_port + 3}",
            "DOCFLOW_S3_ACCESS_KEY": self.s3_access_key,
            "DOCFLOW_S3_SECRET_KEY": self.s3_secret_key,
            "DOCFLOW_PROJECT_DIR": str(ROOT),
            "PREFECT_API_URL": self.prefect_api_url,
            "PREFECT_HOME": str(self.folder / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
        }

    def start(self, echo: Callable[[str], None]) -> None:
        # The postgres user must reach its data directory when this runs as root.
        os.chmod(self.folder, 0o755)
        for home in ("home", "prefect-home"):
            (self.folder / home).mkdir(exist_ok=True)
        for script, what in (
            ("postgres.sh", "PostgreSQL 15"),
            ("seaweedfs.sh", "SeaweedFS"),
            ("prefect-server.sh", "prefect server (on PostgreSQL)"),
        ):
            began = time.monotonic()
            env = self._env(script)
            self.started.append((script, env))
            where = run_script(script, "start", env)
            echo(f"{what}: {where} ({time.monotonic() - began:.0f} s)")

    def stop_commands(self) -> list[str]:
        """Shell lines that stop what `start` started (printed by --keep)."""
        lines = []
        for script, env in reversed(self.started):
            settings = " ".join(
                f"{k}={env[k]}"
                for k in ("PGDATA_DIR", "PGPORT", "S3_DIR", "S3_BASE_PORT", "PREFECT_DIR")
                if k in env
            )
            if script == "seaweedfs.sh":
                settings += " AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x"
            lines.append(f"{settings} {LOCAL / script} stop")
        return lines

    def stop(self) -> None:
        for script, env in reversed(self.started):
            run_script(script, "stop", env, check=False)
        self.started.clear()


def new_services(folder: Path) -> Services:
    return Services(
        folder=folder,
        pg_port=free_port_block(1),
        s3_base_port=free_port_block(4),
        s3_access_key="docflow-soak",
        s3_secret_key=secrets.token_hex(16),
        prefect_port=free_port_block(1),
    )


def deploy(folder: Path) -> None:
    """Work pools, the `docflow-extract` limit (one slot, as `docflow deploy` makes it) and the
    soak deployment, through `flows.deployments.deploy_all` (`prefect deploy`)."""
    from flows.deployments import deploy_all

    prefect_file = folder / "prefect-soak.yaml"
    prefect_file.write_text(PREFECT_FILE)
    done = deploy_all(ROOT, prefect_file)
    if done.returncode != 0:
        raise RuntimeError(f"prefect deploy failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


# --- workers ----------------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def descendants(self) -> list[Any]:
        """Its descendant processes (`psutil.Process`), the flow runs it started among them."""
        import psutil

        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []


class Workers:
    """Process workers started by this benchmark, each in a session of its own."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder = folder
        self.env = env
        self.all: list[Worker] = []
        self.flow_processes: list[Any] = []  # flow-run processes seen, to end at tear-down

    def start(self, name: str, timeout: float = 180) -> Worker:
        log = self.folder / f"worker-{name}.log"
        command = [
            str(BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            POOL,
            "--type",
            "process",
            "--name",
            f"soak-{name}",
            "--limit",
            "1",
            "--install-policy",
            "never",
        ]
        with open(log, "w") as output:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                command,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(name, process, log)
        self.all.append(worker)
        deadline = time.monotonic() + timeout
        while "started!" not in log.read_text(errors="replace"):
            if not worker.alive():
                raise RuntimeError(f"worker {name} exited:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} not ready in {timeout:.0f} s")
            time.sleep(0.5)
        return worker

    def owner_of(self, pid: int) -> Worker | None:
        """The worker whose descendant process `pid` is (None when it is none of ours)."""
        for worker in self.all:
            if pid in {process.pid for process in worker.descendants()}:
                return worker
        return None

    def stop_all(self) -> None:
        """Each worker: SIGTERM twice (the first only starts a drain), then SIGKILL; then any
        flow-run process it started that is still there (they run in sessions of their own,
        so they outlive their worker)."""
        import psutil

        for worker in self.all:
            self.flow_processes.extend(worker.descendants())
        for worker in self.all:
            if worker.alive():
                for _ in range(2):
                    _signal(worker.pid, signal.SIGTERM)
                    time.sleep(1)
                try:
                    worker.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    _signal(worker.pid, signal.SIGKILL)
                    worker.process.wait()
        for process in self.flow_processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()  # psutil checks that the pid was not reused meanwhile


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
