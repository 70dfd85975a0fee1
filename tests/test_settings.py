"""Settings from DOCFLOW_* variables and .env; secrets never printed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.settings import EMBEDDED_PG_PORT, EMBEDDED_S3_PORT, Settings, get_settings

DB_PASSWORD = "db-pass-Zq8#x"
S3_SECRET = "s3-secret-Kv71"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path: Path):
    """No DOCFLOW_* from the outer environment, and no .env but the one a test writes."""
    for key in list(os.environ):
        if key.startswith("DOCFLOW_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults_are_the_embedded_services():
    settings = Settings()
    assert settings.s3_endpoint == f"127.0.0.1:{EMBEDDED_S3_PORT}"
    assert f"127.0.0.1:{EMBEDDED_PG_PORT}/docflow" in settings.database_url.get_secret_value()
    assert settings.home == Path(".docflow") and settings.device == "auto"
    assert settings.project_dir is None


def test_environment_is_parsed_into_types(monkeypatch):
    monkeypatch.setenv("DOCFLOW_HOME", "/srv/docflow")
    monkeypatch.setenv("DOCFLOW_S3_SECURE", "true")
    monkeypatch.setenv("DOCFLOW_OCR_WORKERS", "3")
    monkeypatch.setenv("DOCFLOW_DEVICE", "cuda")
    monkeypatch.setenv("DOCFLOW_MAX_DOCUMENT_BYTES", "1048576")
    monkeypatch.setenv("docflow_inbox_bucket", "scans")  # names are case-insensitive
    settings = Settings()
    assert settings.home == Path("/srv/docflow")
    assert settings.s3_secure is True and settings.ocr_workers == 3 and settings.device == "cuda"
    assert settings.max_document_bytes == 1024 * 1024 and settings.inbox_bucket == "scans"


@pytest.mark.parametrize(
    ("name", "value"),
    [("DOCFLOW_OCR_WORKERS", "0"), ("DOCFLOW_DEVICE", "tpu"), ("DOCFLOW_CHUNK_SIZE", "many")],
)
def test_invalid_values_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_dotenv_file_is_read_and_environment_wins(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("DOCFLOW_INBOX_BUCKET=from-dotenv\nDOCFLOW_CHUNK_SIZE=4\n")
    monkeypatch.setenv("DOCFLOW_CHUNK_SIZE", "16")
    settings = Settings()
    assert settings.inbox_bucket == "from-dotenv" and settings.chunk_size == 16


def test_get_settings_is_cached_until_cleared(monkeypatch):
    first = get_settings()
    assert get_settings() is first
    monkeypatch.setenv("DOCFLOW_CHUNK_SIZE", "5")
    get_settings.cache_clear()
    assert get_settings().chunk_size == 5


def test_secrets_never_appear_in_output(monkeypatch):
    url = f"postgresql+psycopg2://docflow:{DB_PASSWORD}@db.internal:5432/docflow"
    monkeypatch.setenv("DOCFLOW_DATABASE_URL", url)
    monkeypatch.setenv("DOCFLOW_S3_SECRET_KEY", S3_SECRET)
    settings = Settings()

    for text in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
    ):
        assert DB_PASSWORD not in text and S3_SECRET not in text
    assert "db.internal" in repr(settings)  # the URL itself is shown, only its password hidden
    assert (
        settings.masked_database_url == "postgresql+psycopg2://docflow:***@db.internal:5432/docflow"
    )
    # the real values are there for the code that needs them
    assert settings.database_url.get_secret_value() == url
    assert settings.s3_secret_key.get_secret_value() == S3_SECRET


def test_secret_in_an_invalid_setting_is_not_echoed(monkeypatch):
    monkeypatch.setenv("DOCFLOW_S3_SECRET_KEY", S3_SECRET)
    monkeypatch.setenv("DOCFLOW_OCR_WORKERS", "-1")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert S3_SECRET not in str(info.value)
