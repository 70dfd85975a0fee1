"""Setting up a Prefect server for docflow: work pools, the global concurrency limit, and the
deployments of `prefect.yaml` (`docflow deploy`).

The limit matters even on the ephemeral API: extraction takes its slot with `strict=True`, which
fails on a limit that was never created (a missing limit would otherwise be silently
unlimited), so in-process runs call `ensure_concurrency_limits` first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from flows.tasks import EXTRACT_LIMIT

WORK_POOLS = ("docflow-cpu", "docflow-gpu")
PROJECT_DIR = Path(__file__).resolve().parents[1]
PREFECT_FILE = PROJECT_DIR / "prefect.yaml"


def start_api(echo: Callable[[str], None] = print) -> None:
    """Start the ephemeral Prefect API now, deliberately, when no server is configured.

    Prefect would start it at the first client call anyway; starting it here says so first,
    because its first start creates and migrates a SQLite database, which takes a while on a
    small machine (the start-up timeout is raised for it in
    `embedded.prefect_env.prefect_environment`).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME

    if PREFECT_API_URL.value():
        return
    from prefect.client.orchestration import get_client

    # The server cannot create its database in a folder that does not exist, and the client
    # would then wait out the whole start-up timeout.
    Path(PREFECT_HOME.value()).expanduser().mkdir(parents=True, exist_ok=True)

    echo("Prefect: starting the local (ephemeral) API; the first start creates its database")
    with get_client(sync_client=True) as client:
        client.api_healthcheck()


def ensure_concurrency_limits(extract_slots: int = 1) -> None:
    """Create (or resize) the global limit `docflow-extract`: how many extraction batches run
    at once across every worker (one per GPU is the usual choice)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(EXTRACT_LIMIT, extract_slots)


def ensure_work_pools(pools: tuple[str, ...] = WORK_POOLS) -> list[str]:
    """Create the `process` work pools that are missing; returns the ones created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    created = []
    with get_client(sync_client=True) as client:
        for name in pools:
            try:
                client.read_work_pool(name)
                continue
            except ObjectNotFound:
                pass
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
            created.append(name)
    return created


def deploy_all(
    project_dir: Path = PROJECT_DIR, prefect_file: Path | None = None, extract_slots: int = 1
) -> subprocess.CompletedProcess:
    """Pools, limit, then every deployment in `prefect.yaml`, against the server in
    PREFECT_API_URL. `prefect deploy` runs as a command: it is the supported way to read the
    file (schedules, triggers, pull steps) and it imports each flow to record its parameters.
    The pull step points the worker at `$DOCFLOW_PROJECT_DIR`, set here to `project_dir`."""
    if not os.environ.get("PREFECT_API_URL"):
        raise RuntimeError(
            "docflow deploy needs a Prefect server: set PREFECT_API_URL "
            "(deploy/local/all.sh start writes it into .docflow-local/docflow.env)"
        )
    ensure_work_pools()
    ensure_concurrency_limits(extract_slots)
    prefect = Path(sys.executable).parent / "prefect"
    env = {**os.environ, "DOCFLOW_PROJECT_DIR": str(Path(project_dir).resolve())}
    return subprocess.run(
        [
            str(prefect) if prefect.exists() else "prefect",
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            str(prefect_file or Path(project_dir) / "prefect.yaml"),
        ],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
