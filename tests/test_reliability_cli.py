"""Reliability and safety of the `docflow` command line, on real PostgreSQL, SeaweedFS and a real
Prefect API: settings kept in Prefect Secret blocks, passwords in what it prints, what its
exports write, and the commands that destroy or overwrite."""

from __future__ import annotations

import contextlib
import io
import uuid

import pytest
import sqlalchemy as sa

from flows.cli import main
from flows.settings import Settings, get_settings

pytestmark = pytest.mark.slow


def docflow(*argv: str) -> tuple[int, str]:
    """Run a `docflow` command in this process; (exit code, what it printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


def use_settings(monkeypatch, **values: str) -> Settings:
    for name, value in values.items():
        monkeypatch.setenv(f"DOCFLOW_{name.upper()}", value)
    get_settings.cache_clear()
    return get_settings()


# --- 11: prefect-secret: settings and passwords in what is printed -----------------------------


def test_every_command_reads_its_secrets_from_prefect_secret_blocks(
    prefect_api, docflow_env, monkeypatch
):
    """The database URL (with a password, and an application name to find its connections by)
    and the S3 secret key live in Prefect Secret blocks: `db`, `status`, `init`, `jobs`,
    `fields` and `export` all use the blocks' values, and print the password nowhere."""
    from prefect.blocks.system import Secret

    settings = docflow_env
    plain_url = settings.database_url.get_secret_value()
    password = "pw-" + uuid.uuid4().hex  # the test server trusts loopback and ignores it
    url = (
        sa.engine.make_url(plain_url)
        .set(password=password, query={"application_name": "docflow-cli-secret"})
        .render_as_string(hide_password=False)
    )
    Secret(value=url).save("docflow-cli-database-url", overwrite=True)
    Secret(value=settings.s3_secret_key.get_secret_value()).save(
        "docflow-cli-s3-secret-key", overwrite=True
    )
    use_settings(
        monkeypatch,
        database_url="prefect-secret:docflow-cli-database-url",
        s3_secret_key="prefect-secret:docflow-cli-s3-secret-key",
    )

    outputs = []
    for argv, expected in [
        (["init"], "schema is at the latest migration"),
        (["db", "current"], "0"),
        (["db", "upgrade"], ""),
        (["jobs"], "recent jobs"),
        (["export"], "source_key"),
        (["status"], "ok   PostgreSQL"),
    ]:
        code, out = docflow(*argv)
        assert expected in out, (argv, out)
        assert code == 0 or argv == ["status"], (argv, out)
        outputs.append(out)
    code, out = docflow("fields", "no-such-document")
    assert code == 1 and "no extracted fields" in out, out
    assert password not in "\n".join([*outputs, out])


def test_a_password_given_as_a_url_parameter_is_masked(docflow_env, monkeypatch):
    """psycopg2 also takes the password as `?password=`: it is masked like the URL's own."""
    settings = docflow_env
    plain_url = settings.database_url.get_secret_value()
    password = "pw-" + uuid.uuid4().hex
    in_query = f"{plain_url}?password={password}&application_name=docflow"
    settings = use_settings(monkeypatch, database_url=in_query)
    assert password not in settings.masked_database_url
    assert "application_name=docflow" in settings.masked_database_url
    assert password not in repr(settings)
    code, out = docflow("status")
    assert "PostgreSQL" in out and password not in out


# --- 13: what the exports write, and the commands that destroy or overwrite --------------------

FORMULAS = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


def stored_fields(settings: Settings, count: int) -> list[str]:
    """One document with `count` fields: the formula-like values first, then plain ones.
    Returns the values in the order `export` writes them (by name)."""
    from db.documents import DocumentObject, register_documents
    from db.extractions import store_extraction
    from db.jobs import open_job
    from db.migrate import upgrade
    from db.model_versions import register_model_version
    from db.session import session_scope
    from flows.clients import sessions

    upgrade(settings.database_url.get_secret_value())
    values = [*FORMULAS, *(f"plain {i}" for i in range(count - len(FORMULAS)))]
    with session_scope(sessions(settings)) as session:
        [document] = register_documents(
            session, [DocumentObject("inbox", "=cmd|' /C calc'!A0.png", "b" * 64, 1, "image/png")]
        )
        version = register_model_version(session, "v", "/m/v")
        job = open_job(session, "digitize")
        fields = [{"name": f"f{i:03d}", "value": value} for i, value in enumerate(values)]
        store_extraction(session, document.id, version, job, fields)
    return values


def test_csv_export_neutralises_formulas_and_streams_its_rows(docflow_env, monkeypatch):
    """Cells that a spreadsheet would run as a formula (starting with = + - @ tab or CR) are
    written with a leading apostrophe, as OWASP recommends; JSON lines keep the values as they
    are. Rows go out as the database cursor gives them: while the first data row is written,
    the export's session is still fetching from its server-side cursor."""
    import csv
    import json

    import flows.cli.documents as documents

    settings = docflow_env
    values = stored_fields(settings, 12)
    monkeypatch.setattr(documents, "EXPORT_BATCH_ROWS", 5, raising=False)
    url = settings.database_url.get_secret_value()
    seen_while_writing: list[str] = []

    class Watching(io.StringIO):
        """Standard output that, at the first data row, asks PostgreSQL what the exporting
        session is doing."""

        def write(self, text: str) -> int:
            if "plain 0" in text and not seen_while_writing:
                engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
                with engine.connect() as conn:
                    seen_while_writing.extend(
                        conn.execute(
                            sa.text(
                                "SELECT query FROM pg_stat_activity WHERE datname = "
                                "current_database() AND pid <> pg_backend_pid()"
                            )
                        ).scalars()
                    )
                engine.dispose()
            return super().write(text)

    out = Watching()
    with contextlib.redirect_stdout(out):
        assert main(["export", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [row["value"] for row in rows] == [f"'{v}" for v in FORMULAS] + values[len(FORMULAS) :]
    assert {row["source_key"] for row in rows} == {"'=cmd|' /C calc'!A0.png"}
    assert any(query.lstrip().upper().startswith("FETCH") for query in seen_while_writing), (
        seen_while_writing
    )

    code, out = docflow("export", "--format", "jsonl")
    assert [json.loads(line)["value"] for line in out.splitlines()] == values


def test_db_downgrade_needs_a_target_or_yes(docflow_env):
    """`docflow db downgrade` alone changes nothing and says what to do; with a revision or
    `--yes` (one step) it goes down."""
    from db.migrate import current, upgrade

    url = docflow_env.database_url.get_secret_value()
    upgrade(url)
    head = current(url)
    code, out = docflow("db", "downgrade")
    assert code == 1 and "--yes" in out, out
    assert current(url) == head
    assert docflow("db", "downgrade", "--yes")[0] == 0
    below = current(url)
    assert below is not None and below != head
    assert docflow("db", "downgrade", "0001")[0] == 0
    assert current(url) == "0001"


def test_upload_refuses_two_files_that_would_share_a_key(docflow_env, tmp_path):
    """`docflow upload a/x.png b/x.png` would put both at the same key, the second over the
    first: it uploads nothing and names both files."""
    from flows.clients import object_store

    settings = docflow_env
    for folder, content in (("a", b"first"), ("b", b"second")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(content)
    first, second = str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png")
    code, out = docflow("upload", "--no-event", first, second)
    assert code == 1 and first in out and second in out, out
    store = object_store(settings)
    store.ensure_bucket(settings.inbox_bucket)
    assert list(store.list_objects(settings.inbox_bucket)) == []
    # One of them, or both under different prefixes, go in as usual.
    assert docflow("upload", "--no-event", first)[0] == 0
    assert docflow("upload", "--no-event", "--prefix", "b/", second)[0] == 0
    keys = sorted(o.key for o in store.list_objects(settings.inbox_bucket))
    assert keys == ["b/x.png", "x.png"]
