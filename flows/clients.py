"""Process-wide clients: one object store and one database pool per process, not per task."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from flows.settings import Settings, get_settings, reveal
from flows.storage import ObjectStore


@lru_cache(maxsize=4)
def _object_store(endpoint: str, access_key: str, secret_key: str, secure: bool, region: str):
    return ObjectStore(endpoint, access_key, secret_key, secure=secure, region=region)


def object_store(settings: Settings | None = None) -> ObjectStore:
    settings = settings or get_settings()
    return _object_store(
        settings.s3_endpoint,
        settings.s3_access_key,
        reveal(settings.s3_secret_key),
        settings.s3_secure,
        settings.s3_region,
    )


@lru_cache(maxsize=4)
def _session_factory(database_url: str) -> sessionmaker[Session]:
    from db.session import make_engine, make_session_factory

    return make_session_factory(make_engine(database_url))


def sessions(settings: Settings | None = None) -> sessionmaker[Session]:
    """Sessions on this process's pool for the configured database."""
    settings = settings or get_settings()
    return _session_factory(reveal(settings.database_url))
