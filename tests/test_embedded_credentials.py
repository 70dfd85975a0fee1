"""The embedded default's credentials: made by the first `docflow up`, kept in `$DOCFLOW_HOME`
(mode 0600 in a private home), used by every command, and required by every port: PostgreSQL
asks for its password, S3 for the generated keys, and SeaweedFS's other ports (master, volume,
filer, their gRPC, the admin server) for a client certificate. Real services, started by the
real command on free loopback ports, with nothing set but the ports and the home."""

from __future__ import annotations

import http.client
import json
import os
import pwd
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from helpers_services import free_port_block
from test_services import docflow, started_pids

from embedded.postgres import PG_SYSTEM_USER
from embedded.seaweedfs import SEAWEEDFS_PORT_FLAGS, seaweedfs_ports
from flows.settings import Settings, get_settings
from flows.storage import ObjectStore, StorageError

# What the embedded default used before its credentials were generated: a constant in settings.
OLD_ACCESS_KEY, OLD_SECRET_KEY = "docflow", "docflow-embedded-secret"
CREDENTIALS_FILE = "credentials.json"
PRIVATE_BYTES = b"private scan bytes 7f3a"


def zero_setup_env(home: Path) -> dict[str, str]:
    """Environment of an installation that sets nothing but its home and its ports: no
    password in the database URL, no S3 keys."""
    base = free_port_block(1 + len(SEAWEEDFS_PORT_FLAGS))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCFLOW_", "PREFECT_"))}
    env.pop("PGPASSWORD", None)
    env.update(
        DOCFLOW_HOME=str(home),
        DOCFLOW_DATABASE_URL=f"postgresql+psycopg2://postgres@127.0.0.1:{base}/docflow",
        DOCFLOW_S3_ENDPOINT=f"127.0.0.1:{base + 1}",
        DOCFLOW_INBOX_BUCKET="inbox-test",
        DOCFLOW_ARTIFACT_BUCKET="artifacts-test",
        DOCFLOW_ARCHIVE_BUCKET="archive-test",
    )
    return env


@pytest.fixture
def zero_setup(tmp_path: Path):
    env = zero_setup_env(tmp_path / "home")
    try:
        yield env
    finally:
        docflow(env, "down")


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """A zero-setup installation after its first `docflow up` (shared by the module's checks
    that only read)."""
    env = zero_setup_env(tmp_path_factory.mktemp("zero-setup") / "home")
    up = docflow(env, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield env, up
    finally:
        docflow(env, "down")


def settings_of(env: dict[str, str], monkeypatch) -> Settings:
    """The settings a command run with `env` sees (in this process, as flows run in-process)."""
    for key in list(os.environ):
        if key.startswith("DOCFLOW_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("DOCFLOW_"):
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return Settings()


def credentials_of(env: dict[str, str]) -> dict[str, str]:
    return json.loads((Path(env["DOCFLOW_HOME"]) / CREDENTIALS_FILE).read_text())


def assert_private(home: Path) -> None:
    """The home is 0700; when root, 0710 with the group of the PostgreSQL server's own OS user,
    which must reach its data directory inside (nobody else can even traverse it)."""
    info = home.stat()
    if os.geteuid() == 0:
        assert stat.S_IMODE(info.st_mode) == 0o710, oct(info.st_mode)
        assert info.st_gid == pwd.getpwnam(PG_SYSTEM_USER).pw_gid
    else:
        assert stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
    credentials = home / CREDENTIALS_FILE
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert credentials.stat().st_uid == os.geteuid()


def engine_with_password(env: dict[str, str], password: str | None) -> sa.Engine:
    url = sa.engine.make_url(env["DOCFLOW_DATABASE_URL"]).set(password=password)
    # passfile: no ~/.pgpass may supply what the test leaves out
    return sa.create_engine(url, connect_args={"connect_timeout": 5, "passfile": os.devnull})


def assert_postgres_wants_the_password(env: dict[str, str]) -> None:
    for password, refusal in [
        (None, "no password supplied"),
        ("wrong", "password authentication failed"),
    ]:
        engine = engine_with_password(env, password)
        with pytest.raises(sa.exc.OperationalError, match=refusal):
            engine.connect()
        engine.dispose()
    hba = Path(env["DOCFLOW_HOME"]) / "postgres" / "pg_hba.conf"
    rules = [line.split() for line in hba.read_text().splitlines() if line.strip()]
    methods = {rule[-1] for rule in rules if not rule[0].startswith("#")}
    assert methods == {"scram-sha-256"}, methods


def assert_s3_refuses(env: dict[str, str], access: str, secret: str) -> None:
    with pytest.raises(StorageError):
        ObjectStore(env["DOCFLOW_S3_ENDPOINT"], access, secret).list_buckets()


# --- a first `up`, the settings, PostgreSQL and S3 ----------------------------------------------


def test_first_up_makes_credentials_every_command_uses(running, monkeypatch):
    env, up = running
    home = Path(env["DOCFLOW_HOME"])
    assert_private(home)
    credentials = credentials_of(env)
    assert set(credentials) == {"database_password", "s3_access_key", "s3_secret_key"}
    output = up.stdout + up.stderr
    assert f"{home.resolve() / CREDENTIALS_FILE}" in output
    assert credentials["database_password"] not in output
    assert credentials["s3_secret_key"] not in output

    # Commands find them without being told (status checks PostgreSQL and S3 with them)...
    status = docflow(env, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "ok   PostgreSQL" in status.stdout and "ok   S3" in status.stdout
    assert credentials["database_password"] not in status.stdout
    # ... and so do flows run in-process, through the settings.
    settings = settings_of(env, monkeypatch)
    url = sa.engine.make_url(settings.database_url.get_secret_value())
    assert url.password == credentials["database_password"] and url.port is not None
    assert settings.s3_access_key == credentials["s3_access_key"]
    assert settings.s3_secret_key.get_secret_value() == credentials["s3_secret_key"]
    store = ObjectStore(settings.s3_endpoint, settings.s3_access_key, credentials["s3_secret_key"])
    assert {"inbox-test", "artifacts-test", "archive-test"} <= set(store.list_buckets())

    # A second `up` keeps them.
    again = docflow(env, "up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout and credentials_of(env) == credentials
    assert_private(home)


def test_postgres_refuses_a_connection_without_the_password(running):
    env, _ = running
    assert_postgres_wants_the_password(env)
    engine = engine_with_password(env, credentials_of(env)["database_password"])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    engine.dispose()


def test_s3_refuses_the_old_constant_secret(running):
    env, _ = running
    generated = credentials_of(env)
    assert_s3_refuses(env, OLD_ACCESS_KEY, OLD_SECRET_KEY)
    assert_s3_refuses(env, generated["s3_access_key"], OLD_SECRET_KEY)
    assert_s3_refuses(env, OLD_ACCESS_KEY, generated["s3_secret_key"])


# --- SeaweedFS's ports besides S3 ---------------------------------------------------------------


def plain_http(port: int, path: str) -> tuple[int | None, bytes]:
    """An anonymous HTTP GET: (status, body), or (None, b"") when the connection fails."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        return None, b""


def tls_get(port: int, path: str, client_cert: tuple[Path, Path] | None) -> tuple[int, bytes]:
    """A GET over TLS, with a client certificate or without one (the server's is not checked
    without one: an anonymous client would not have the CA either)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(*client_cert)
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as conn,
    ):
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]) if head else 0, body


def test_seaweedfs_ports_other_than_s3_refuse_anonymous_access(running):
    """An object written through S3 cannot be read, listed or deleted through the master,
    volume or filer HTTP ports, nor reached through any gRPC port or the admin server: each one
    speaks only TLS and demands a client certificate signed by the installation's own CA
    (which is not kept). The filer also demands a signed token for every read and write."""
    env, _ = running
    credentials = credentials_of(env)
    store = ObjectStore(
        env["DOCFLOW_S3_ENDPOINT"], credentials["s3_access_key"], credentials["s3_secret_key"]
    )
    store.put_bytes("inbox-test", "private/scan.png", PRIVATE_BYTES)
    s3_port = int(env["DOCFLOW_S3_ENDPOINT"].rsplit(":", 1)[1])
    ports = {flag: port for flag, port in seaweedfs_ports(s3_port).items() if flag != "s3.port"}
    paths = [
        "/buckets/inbox-test/private/scan.png",  # the filer's path of the object
        "/buckets/inbox-test/private/?pretty=y",  # the filer's listing
        "/dir/status",  # the master's topology (volume ids)
        "/status",  # the volume server's volumes
        "/col/delete?collection=inbox-test",  # the master deleting the bucket's volumes
    ]
    for flag, port in ports.items():
        for path in paths:
            status, body = plain_http(port, path)
            assert status is None or status >= 400, (flag, path, status)
            assert PRIVATE_BYTES not in body and b"inbox-test" not in body, (flag, path)
            try:
                status, body = tls_get(port, path, client_cert=None)
            except (ssl.SSLError, OSError):
                status, body = 0, b""  # refused in the handshake: no certificate
            assert (status, body) == (0, b""), (flag, path, status)

    # The ports are alive: with the installation's certificate the master answers, and the
    # filer still refuses a read without its token.
    tls = Path(env["DOCFLOW_HOME"]) / "seaweedfs" / "tls"
    client_cert = (tls / "weed.crt", tls / "weed.key")
    assert stat.S_IMODE(client_cert[1].stat().st_mode) == 0o600
    assert tls_get(ports["master.port"], "/dir/status", client_cert)[0] == 200
    status, body = tls_get(ports["filer.port"], paths[0], client_cert)
    assert status == 401 and PRIVATE_BYTES not in body
    assert not (tls / "ca.key").exists()

    # Nothing above reached the data: the object and its bucket are still there.
    assert store.read_bytes("inbox-test", "private/scan.png", max_bytes=100) == PRIVATE_BYTES


def test_weed_sockets_and_files_are_the_owners_only(running):
    """`weed` runs with umask 077: the Unix sockets it listens on (some in /tmp, one of them
    the filer's plain HTTP) accept only its own user (connecting needs write permission).
    Its data, keys and configuration are in folders and files of their own user only."""
    env, _ = running
    pid = started_pids(env)["seaweedfs"]
    connections = psutil.Process(pid).net_connections(kind="unix")
    sockets = {c.laddr for c in connections if c.laddr and c.laddr.startswith("/")}
    assert any(path.startswith("/tmp/") for path in sockets), sockets
    root = Path(env["DOCFLOW_HOME"]) / "seaweedfs"
    secrets = [root / "security.toml", root / "tls" / "weed.key"]
    written = [*sockets, root, root / "data", root / "tls", *secrets]
    for path in written:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))


# --- explicit settings win ----------------------------------------------------------------------


def test_generated_credentials_fill_only_what_is_not_set(tmp_path, monkeypatch):
    from embedded.credentials import ensure_credentials

    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    env = {"DOCFLOW_HOME": str(home)}
    without = settings_of(env, monkeypatch)  # before any `up`: nothing to fill in
    assert sa.engine.make_url(without.database_url.get_secret_value()).password is None

    ensure_credentials(home)
    generated = credentials_of(env)
    settings = settings_of(env, monkeypatch)
    assert (
        sa.engine.make_url(settings.database_url.get_secret_value()).password
        == generated["database_password"]
    )
    assert settings.s3_access_key == generated["s3_access_key"]
    assert settings.s3_secret_key.get_secret_value() == generated["s3_secret_key"]

    explicit = [
        "postgresql+psycopg2://me:mine@127.0.0.1:25432/docflow",  # a password of its own
        "postgresql+psycopg2://me@127.0.0.1:25432/docflow?password=mine",
        "postgresql+psycopg2://me@db.internal:5432/docflow",  # not on this machine
        "prefect-secret:docflow-database-url",  # a block's name
    ]
    for url in explicit:
        given = settings_of({**env, "DOCFLOW_DATABASE_URL": url}, monkeypatch)
        assert given.database_url.get_secret_value() == url
    mine = settings_of({**env, "DOCFLOW_S3_SECRET_KEY": "mine"}, monkeypatch)
    assert (mine.s3_access_key, mine.s3_secret_key.get_secret_value()) == ("docflow", "mine")
    external = settings_of({**env, "DOCFLOW_S3_ENDPOINT": "s3.internal:9000"}, monkeypatch)
    assert external.s3_secret_key.get_secret_value() != generated["s3_secret_key"]

    # A second call keeps what the first made, and never loosens the file.
    ensure_credentials(home)
    assert credentials_of(env) == generated
    assert stat.S_IMODE((home / CREDENTIALS_FILE).stat().st_mode) == 0o600
    get_settings.cache_clear()


# --- a home made by an older docflow ------------------------------------------------------------


def make_it_look_older(env: dict[str, str]) -> None:
    """Turn a running installation into what an older docflow left: PostgreSQL trusting every
    connection with no password set, SeaweedFS running with the constant keys and nothing on
    its other ports, no credentials file, a home anyone can read."""
    home = Path(env["DOCFLOW_HOME"])
    engine = engine_with_password(env, credentials_of(env)["database_password"])
    with engine.connect() as conn:
        conn.execute(sa.text("ALTER ROLE CURRENT_USER PASSWORD NULL"))
        conn.commit()
    engine.dispose()
    hba = home / "postgres" / "pg_hba.conf"
    hba.write_text(re.sub(r"scram-sha-256", "trust", hba.read_text()))
    os.kill(started_pids(env)["postgres"], signal.SIGHUP)
    deadline = time.monotonic() + 30
    while True:  # until the reload lets a connection in without a password
        try:
            engine_with_password(env, None).connect().close()
            break
        except sa.exc.OperationalError:
            assert time.monotonic() < deadline, "PostgreSQL did not reload pg_hba.conf"
            time.sleep(0.2)

    from embedded.seaweedfs import EmbeddedSeaweedFS

    old = Settings(
        home=home,
        s3_endpoint=env["DOCFLOW_S3_ENDPOINT"],
        s3_access_key=OLD_ACCESS_KEY,
        s3_secret_key=OLD_SECRET_KEY,
    )
    seaweed = EmbeddedSeaweedFS(old)
    seaweed.stop()
    for path in [seaweed.root / "security.toml", *(seaweed.root / "tls").glob("*")]:
        path.unlink()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCFLOW_")}
    environment.update(
        AWS_ACCESS_KEY_ID=OLD_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=OLD_SECRET_KEY,
        TMPDIR=str(seaweed.root / "tmp"),
    )
    with open(seaweed.root / "weed.log", "ab") as log:
        proc = subprocess.Popen(
            seaweed.command(),
            cwd=seaweed.root,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    seaweed.process.record(proc.pid)
    store = ObjectStore(env["DOCFLOW_S3_ENDPOINT"], OLD_ACCESS_KEY, OLD_SECRET_KEY)
    deadline = time.monotonic() + 60
    while True:
        try:
            store.read_bytes("inbox-test", "kept.png", max_bytes=100)
            break
        except StorageError:
            assert time.monotonic() < deadline, "the old SeaweedFS did not serve"
            time.sleep(0.5)
    (home / CREDENTIALS_FILE).unlink()
    home.chmod(0o755)


def test_a_home_made_by_an_older_docflow_is_upgraded_in_place(zero_setup):
    env = zero_setup
    assert docflow(env, "up").returncode == 0
    first = credentials_of(env)
    engine = engine_with_password(env, first["database_password"])
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE kept (note text)"))
        conn.execute(sa.text("INSERT INTO kept VALUES ('from before')"))
    engine.dispose()
    store = ObjectStore(env["DOCFLOW_S3_ENDPOINT"], first["s3_access_key"], first["s3_secret_key"])
    store.put_bytes("inbox-test", "kept.png", PRIVATE_BYTES)
    make_it_look_older(env)
    pg_pid = started_pids(env)["postgres"]

    up = docflow(env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "PostgreSQL: already running" in up.stdout, up.stdout
    assert "password authentication" in up.stdout and "SeaweedFS: restarted" in up.stdout
    assert started_pids(env)["postgres"] == pg_pid  # upgraded without a restart

    credentials = credentials_of(env)
    assert credentials["database_password"] != first["database_password"]
    assert_private(Path(env["DOCFLOW_HOME"]))
    assert_postgres_wants_the_password(env)
    engine = engine_with_password(env, credentials["database_password"])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT note FROM kept")).scalar_one() == "from before"
    engine.dispose()
    store = ObjectStore(
        env["DOCFLOW_S3_ENDPOINT"], credentials["s3_access_key"], credentials["s3_secret_key"]
    )
    assert store.read_bytes("inbox-test", "kept.png", max_bytes=100) == PRIVATE_BYTES
    assert_s3_refuses(env, OLD_ACCESS_KEY, OLD_SECRET_KEY)
    status = docflow(env, "status")
    assert status.returncode == 0, status.stdout + status.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
