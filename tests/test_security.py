"""Security properties, each shown on the real thing: credentials stay out of every log line of
a run (also when they come from Prefect Secret blocks), SQL text in values is stored as data,
the embedded services listen on loopback only and S3 refuses anonymous requests, and a document
over the byte limit is refused before it is downloaded."""

from __future__ import annotations

import ast
import io
import logging
import os
import urllib.error
import urllib.request
import uuid

import psutil
import pytest
import sqlalchemy as sa
import test_flows
from conftest import ROOT
from helpers_flows import put_with_ocr, query
from test_flows import prepare_services
from test_services import docflow, embedded, started_pids  # noqa: F401  (fixture)

from flows.settings import get_settings

receipts = test_flows.receipts
tiny_model = test_flows.tiny_model

EVIL = "'); DROP TABLE fields;--"


# --- credentials -------------------------------------------------------------------------------


@pytest.fixture
def all_log_output():
    """Every log record of this process at DEBUG, Prefect's own loggers included, as text."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(name) for name in ("", "prefect", "urllib3", "sqlalchemy")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def test_no_secret_in_the_logs_of_a_run_with_credentials_from_secret_blocks(
    prefect_api, docflow_env, s3_server, receipts, tiny_model, monkeypatch, all_log_output, capfd
):
    """The database password and the S3 secret key live in Prefect Secret blocks; a run reads
    them from there, and nothing it logs (at DEBUG, here and in the Prefect API), nor the job
    rows or the summary, contains either, not even when a wrong secret makes the run fail."""
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogWorker

    from flows.cli import main
    from flows.digitize import digitize

    settings = docflow_env
    prepare_services(settings)
    plain_url = settings.database_url.get_secret_value()
    password = "pw-" + uuid.uuid4().hex  # the test server trusts loopback and ignores it
    url = (
        sa.engine.make_url(plain_url)
        .set(password=password, query={"application_name": "docflow-from-secret-block"})
        .render_as_string(hide_password=False)
    )
    secret_key = s3_server.secret_key
    Secret(value=url).save("docflow-database-url", overwrite=True)
    Secret(value=secret_key).save("docflow-s3-secret-key", overwrite=True)

    for receipt, key in zip(receipts, ["scans/a.png", f"scans/{EVIL}.png"], strict=False):
        put_with_ocr(settings, key, receipt.encode(), [receipt.ocr])
    from flows.clients import object_store

    object_store(settings).put_bytes(settings.inbox_bucket, "scans/error.pdf", b"<html>no</html>")

    monkeypatch.setenv("DOCFLOW_DATABASE_URL", "prefect-secret:docflow-database-url")
    monkeypatch.setenv("DOCFLOW_S3_SECRET_KEY", "prefect-secret:docflow-s3-secret-key")
    get_settings.cache_clear()
    summary = digitize(model_version=str(tiny_model))
    assert (summary["extracted"], summary["failed"]) == (2, 1)
    # The run's connections are the block's URL (its pool is still open).
    sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
    assert query(plain_url, sessions, name="docflow-from-secret-block")[0][0] >= 1

    # A wrong secret: the run fails on its first request, and says why without the secret.
    wrong = "wrong-" + uuid.uuid4().hex
    Secret(value=wrong).save("docflow-s3-secret-key", overwrite=True)
    get_settings.cache_clear()
    with pytest.raises(Exception, match="access denied"):
        digitize(model_version=str(tiny_model), prefix="scans/", reprocess=True)

    # What the UI shows: the runs' log lines as the Prefect API has them.
    APILogWorker.drain_all(timeout=10)
    api_lines: list[str] = []
    with get_client(sync_client=True) as client:
        while page := client.read_logs(limit=200, offset=len(api_lines)):
            api_lines += [log.message for log in page]
    api_logs = "\n".join(api_lines)
    jobs = query(plain_url, "SELECT parameters::text, coalesce(error, '') FROM jobs")
    captured = capfd.readouterr()
    everything = "\n".join(
        [
            all_log_output.getvalue(),
            api_logs,
            captured.out,
            captured.err,
            repr(summary),
            *(" ".join(row) for row in jobs),
        ]
    )
    assert "job 1: 3 documents" in everything and "SignatureDoesNotMatch" in everything
    for secret in (password, secret_key, wrong):
        assert secret not in everything

    # The key full of SQL is a key like any other: stored verbatim, found by the command line.
    keys = query(plain_url, "SELECT source_key FROM documents ORDER BY source_key")
    assert {k for (k,) in keys} == {"scans/a.png", "scans/error.pdf", f"scans/{EVIL}.png"}
    monkeypatch.setenv("DOCFLOW_DATABASE_URL", plain_url)
    get_settings.cache_clear()
    capfd.readouterr()
    assert main(["fields", f"scans/{EVIL}.png"]) == 0
    assert receipts[1].fields["total"] in capfd.readouterr().out
    assert query(plain_url, "SELECT count(*) FROM fields")[0][0] == 2 * len(test_flows.FIELDS)


# --- SQL ---------------------------------------------------------------------------------------


def test_sql_in_values_is_stored_and_read_back_verbatim(empty_database_url):
    """Field values, names, labels and object keys that look like SQL (or like COPY's own
    escapes) go through the store paths and come back byte for byte."""
    from db.documents import DocumentObject, known_objects, register_documents
    from db.extractions import store_extraction
    from db.jobs import open_job
    from db.labels import labelled_documents, store_labels
    from db.migrate import upgrade
    from db.model_versions import register_model_version
    from db.session import make_engine, make_session_factory, session_scope

    upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    sessions = make_session_factory(engine)
    nasty = [EVIL, "x'; DELETE FROM documents; --", "tab\there", "line\nbreak", "\\N", "back\\"]
    key = f"in/{EVIL}/$1 %s :name.png"
    with session_scope(sessions) as session:
        [document] = register_documents(
            session,
            [DocumentObject("inbox", key, "a" * 64, 10, "image/png", f"etag{EVIL}")],
        )
        version = register_model_version(session, f"model{EVIL}", f"/m/{EVIL}")
        job = open_job(session, "digitize", parameters={"prefix": EVIL})
        fields = [{"name": f"f{i}{EVIL}", "value": value} for i, value in enumerate(nasty)]
        store_extraction(session, document.id, version, job, fields)
        store_labels(session, document.id, {EVIL: EVIL, "total": nasty[1]}, source=EVIL)

    with session_scope(sessions) as session:
        assert known_objects(session, "inbox", {key: f"etag{EVIL}"}) == {key}
        [labelled] = labelled_documents(session, sources=[EVIL])
        assert labelled.key == key and labelled.labels == {EVIL: EVIL, "total": nasty[1]}
    rows = query(
        empty_database_url,
        "SELECT source_key, name, value FROM current_fields ORDER BY name",
    )
    assert [(r.source_key, r.name, r.value) for r in rows] == [
        (key, f"f{i}{EVIL}", value) for i, value in enumerate(nasty)
    ]
    assert query(empty_database_url, "SELECT parameters->>'prefix' FROM jobs")[0][0] == EVIL
    engine.dispose()


def sql_built_from_text() -> set[str]:
    """Places in flows/, embedded/ and db/ where the SQL handed to the database is built with an
    f-string, `%` or `.format`, as "file:function"."""
    sql_calls = {"text", "execute", "exec_driver_sql", "copy_expert"}
    found = set()
    packages = ("flows", "embedded", "db")
    for path in sorted(path for package in packages for path in ROOT.glob(f"{package}/**/*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if not (isinstance(node, ast.Call) and node.args):
                    continue
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                sql = node.args[0]
                built = isinstance(sql, ast.JoinedStr) or (
                    isinstance(sql, ast.BinOp) and isinstance(sql.op, ast.Mod)
                )
                built |= isinstance(sql, ast.Call) and getattr(sql.func, "attr", "") == "format"
                if name in sql_calls and built:
                    found.add(f"{path.relative_to(ROOT)}:{function.name}")
    return found


def test_sql_is_built_from_constants_only():
    """Every SQL statement takes its values as bound parameters. The few statements that put
    text into SQL were each read and put only identifiers or fixed clauses there; a new one
    fails this test until it has been read too."""
    reviewed = {
        # a WHERE clause picked from three constants; the value itself is bound (:v)
        "db/reads.py:fields_of_document",
        # COPY's column list, a module constant
        "db/extractions.py:_insert_fields",
        # CREATE DATABASE takes no parameters: the name is quoted as an identifier first
        "embedded/postgres.py:create_database",
        # DROP VIEW / DROP TYPE of names listed in the migration itself
        "db/migrations/versions/0001_initial_schema.py:downgrade",
    }
    assert sql_built_from_text() <= reviewed


# --- the embedded services -------------------------------------------------------------------


def test_embedded_services_listen_on_loopback_only_and_s3_refuses_anonymous(embedded):  # noqa: F811
    env = embedded
    up = docflow(env, "up")
    assert up.returncode == 0, up.stderr
    listening = set()
    for pid in started_pids(env).values():
        process = psutil.Process(pid)
        for child in [process, *process.children(recursive=True)]:
            for conn in child.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    listening.add((conn.laddr.ip, conn.laddr.port))
    assert listening and {ip for ip, _ in listening} == {"127.0.0.1"}, listening

    endpoint = f"http://{env['DOCFLOW_S3_ENDPOINT']}"
    from flows.storage import ObjectStore

    store = ObjectStore(env["DOCFLOW_S3_ENDPOINT"], "docflow", env["DOCFLOW_S3_SECRET_KEY"])
    store.put_bytes("inbox-test", "private/scan.png", b"private bytes")
    anonymous = [
        urllib.request.Request(f"{endpoint}/inbox-test/private/scan.png"),
        urllib.request.Request(f"{endpoint}/inbox-test?list-type=2"),
        urllib.request.Request(f"{endpoint}/"),
        urllib.request.Request(f"{endpoint}/inbox-test/new.png", data=b"x", method="PUT"),
    ]
    for request in anonymous:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403, request.full_url
        assert b"AccessDenied" in refused.value.read()
    assert not store.exists("inbox-test", "new.png")


# --- size limit --------------------------------------------------------------------------------


def test_an_object_over_the_byte_limit_is_refused_before_any_get(s3_server, caplog):
    """The size is checked with a HEAD before the GET, and the read itself stops at the limit
    + 1 bytes, so even a size that lied could not make a reader take the whole object."""
    from flows.storage import ObjectStore, ObjectTooLarge, read_at_most

    store = ObjectStore(s3_server.endpoint, s3_server.access_key, s3_server.secret_key)
    bucket = f"limits-{uuid.uuid4().hex[:8]}"
    store.ensure_bucket(bucket)
    store.put_bytes(bucket, "large.tif", os.urandom(3_000_000))

    with (
        caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"),
        pytest.raises(ObjectTooLarge, match="more than the limit of 1000000"),
    ):
        store.read_bytes(bucket, "large.tif", max_bytes=1_000_000)
    requests = [r.getMessage() for r in caplog.records if "/large.tif" in r.getMessage()]
    assert requests and all('"HEAD ' in line for line in requests), requests

    # A GET opened without the size check, as if stat had said the object was small.
    response = store._client.get_object(bucket, "large.tif")
    try:
        with pytest.raises(ObjectTooLarge, match="at least 1001 bytes"):
            read_at_most(response, 1000, bucket, "large.tif")
        assert response.tell() == 1001  # bytes taken from the 3 MB body
    finally:
        response.close()
        response.release_conn()
    assert len(store.read_bytes(bucket, "large.tif", max_bytes=3_000_000)) == 3_000_000
