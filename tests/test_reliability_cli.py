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


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


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
