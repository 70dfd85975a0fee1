"""Starting, stopping and checking the embedded PostgreSQL and SeaweedFS (under `docflow up`,
`down` and `status`): start what the settings put on this machine and is not running (every
port checked first), stop only what was started, and say whether each service answers."""

from __future__ import annotations

import os
from dataclasses import dataclass

from embedded.credentials import private_home
from embedded.postgres import EmbeddedPostgres
from embedded.prefect_env import prefect_environment
from embedded.processes import LOOPBACK, Echo, PortInUse, port_is_free
from embedded.seaweedfs import EmbeddedSeaweedFS, OpenS3, S3Unavailable
from embedded.settings import ServiceSettings


def start(settings: ServiceSettings, open_s3: OpenS3, echo: Echo = print) -> None:
    """Start the embedded services that are not running; each one's line goes to `echo`.
    `open_s3` is how SeaweedFS is seen to serve once started.

    What an older docflow left is brought up to date on the way: the home made private, a
    PostgreSQL that trusted every connection made to ask for the password (in place), and a
    SeaweedFS started without its security.toml restarted with it."""
    postgres, seaweed = EmbeddedPostgres(settings), EmbeddedSeaweedFS(settings)
    private_home(postgres.home, group=postgres.server_group())

    # Check every port first, so nothing starts when something cannot.
    wanted: list[tuple[int, str]] = []
    if postgres.local and postgres.process.pid() is None:
        wanted.append((postgres.port, "PostgreSQL"))
    old_seaweed = seaweed.process.pid() if seaweed.local and not seaweed.secured else None
    if seaweed.local and seaweed.process.pid() is None:
        wanted += [(port, f"SeaweedFS -{flag}") for flag, port in seaweed.ports.items()]
    for port, service in wanted:
        if not port_is_free(port):
            raise PortInUse(port, service)

    if not postgres.local:
        echo(f"PostgreSQL: external at {settings.masked_database_url}, not started here")
    elif (pid := postgres.process.pid()) is not None:
        echo(f"PostgreSQL: already running (pid {pid}) on {LOOPBACK}:{postgres.port}")
        postgres.require_password(echo)
        postgres.create_database()
    else:
        pid = postgres.start(echo)
        echo(
            f"PostgreSQL: started (pid {pid}) on {LOOPBACK}:{postgres.port}, data in {postgres.data_dir}"
        )

    if not seaweed.local:
        echo(f"S3: external at {settings.s3_endpoint}, not started here")
    elif old_seaweed is not None:
        # Its master, volume and filer served anyone, and its S3 keys were a constant.
        seaweed.stop()
        pid = seaweed.start(open_s3)
        echo(
            f"SeaweedFS: restarted (pid {pid}, was {old_seaweed}): an older docflow had started "
            f"it with its ports besides S3 open to anyone; they now ask for a certificate"
        )
    elif (pid := seaweed.process.pid()) is not None:
        echo(f"SeaweedFS: already running (pid {pid}), S3 on {LOOPBACK}:{seaweed.s3_port}")
    else:
        pid = seaweed.start(open_s3)
        echo(
            f"SeaweedFS: started (pid {pid}), S3 on {LOOPBACK}:{seaweed.s3_port}, data in {seaweed.data_dir}"
        )


def stop(settings: ServiceSettings, echo: Echo = print) -> None:
    """Stop the processes `start` started (and only those). Data stays on disk."""
    for service in (EmbeddedSeaweedFS(settings), EmbeddedPostgres(settings)):
        pid = service.process.pid()
        if service.stop():
            echo(f"{service.process.name}: stopped (pid {pid})")
        else:
            echo(f"{service.process.name}: not running")


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    endpoint: str
    answers: bool
    detail: str


def status(settings: ServiceSettings, open_s3: OpenS3) -> list[ServiceStatus]:
    """What each service's endpoint is and whether it answers right now (S3: whether
    `open_s3()` lists its buckets)."""
    postgres, seaweed = EmbeddedPostgres(settings), EmbeddedSeaweedFS(settings)
    result = [
        _check_postgres(settings, postgres),
        _check_s3(settings, seaweed, open_s3),
        _check_prefect(settings),
    ]
    return result


def _who(pid: int | None, local: bool) -> str:
    if pid:
        return f"embedded, pid {pid}"
    return "on this machine, not started by docflow up" if local else "external"


def _check_postgres(settings: ServiceSettings, postgres: EmbeddedPostgres) -> ServiceStatus:
    import sqlalchemy as sa

    who = _who(postgres.process.pid(), postgres.local)
    engine = sa.create_engine(
        settings.database_url.get_secret_value(), connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return ServiceStatus("PostgreSQL", settings.masked_database_url, True, who)
    except sa.exc.SQLAlchemyError as exc:
        # psycopg2's first line names host, port and cause, never the password.
        reason = (
            str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines() or ["?"]
        )[0]
        return ServiceStatus("PostgreSQL", settings.masked_database_url, False, f"{who}: {reason}")
    finally:
        engine.dispose()


def _check_s3(
    settings: ServiceSettings, seaweed: EmbeddedSeaweedFS, open_s3: OpenS3
) -> ServiceStatus:
    who = _who(seaweed.process.pid(), seaweed.local)
    scheme = "https" if settings.s3_secure else "http"
    endpoint = f"{scheme}://{settings.s3_endpoint}"
    try:
        buckets = open_s3().list_buckets()
    except S3Unavailable as exc:
        return ServiceStatus("S3", endpoint, False, f"{who}: {exc}")
    return ServiceStatus("S3", endpoint, True, f"{who}, {len(buckets)} buckets")


def _check_prefect(settings: ServiceSettings) -> ServiceStatus:
    import urllib.error
    import urllib.request

    api = os.environ.get("PREFECT_API_URL")
    if not api:
        home = prefect_environment(settings)["PREFECT_HOME"]
        return ServiceStatus(
            "Prefect", "ephemeral", True, f"starts with each flow run; PREFECT_HOME={home}"
        )
    try:
        with urllib.request.urlopen(api.rstrip("/") + "/health", timeout=3) as response:
            return ServiceStatus("Prefect", api, response.status == 200, "server")
    except (urllib.error.URLError, OSError) as exc:
        return ServiceStatus("Prefect", api, False, f"server: {exc}")
