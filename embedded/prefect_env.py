"""Prefect in the embedded default: ephemeral (no server to run), its state under
`$DOCFLOW_HOME/prefect`, set up through the environment before anything imports prefect."""

from __future__ import annotations

import os
from pathlib import Path

from embedded.credentials import private_dir
from embedded.processes import Echo
from embedded.settings import ServiceSettings

EPHEMERAL_API_STARTUP_SECONDS = 300


def prefect_environment(settings: ServiceSettings) -> dict[str, str]:
    """Environment for Prefect in the embedded default: its state under $DOCFLOW_HOME/prefect,
    and no outbound analytics."""
    home = Path(settings.home).expanduser().resolve()
    return {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # The first start of the ephemeral API creates and migrates its SQLite database: on a
        # busy 2-core machine that outlasts Prefect's default 20 s and the run dies with
        # "Timed out while attempting to connect to ephemeral Prefect API server".
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(EPHEMERAL_API_STARTUP_SECONDS),
    }


def apply_prefect_environment(settings: ServiceSettings) -> None:
    """Set `prefect_environment` in os.environ, keeping anything the user set explicitly.

    Call before importing prefect: it reads its settings at import time."""
    for key, value in prefect_environment(settings).items():
        os.environ.setdefault(key, value)


def make_prefect_home(settings: ServiceSettings, echo: Echo = print) -> None:
    """Create the PREFECT_HOME of ephemeral Prefect (nothing to start: the API starts with each
    flow run), for this user only: its database holds the flow runs and any Secret blocks."""
    prefect_home = prefect_environment(settings)["PREFECT_HOME"]
    private_dir(Path(prefect_home))
    echo(f"Prefect: ephemeral mode, PREFECT_HOME={prefect_home}")
