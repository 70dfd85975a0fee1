"""Engines and sessions. The query functions never commit; the caller owns the transaction.

engine = make_engine(url)
Session = make_session_factory(engine)
with session_scope(Session) as session:   # commits on success, rolls back on error
    ids = register_documents(session, objects)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker


def make_engine(database_url: str, **engine_options: Any) -> Engine:
    """An engine whose pool checks each connection before use.

    pool_pre_ping: a nightly job holds its pool for hours; a database restart in between must
    cost one reconnect, not a failed task.

    JSONB values (job parameters, metrics) are written with `default=str`, so a parameter that
    is a date, UUID or path is stored as its text instead of failing the write.
    """
    options: dict[str, Any] = {"pool_pre_ping": True, "json_serializer": _json_dumps}
    options.update(engine_options)
    return create_engine(database_url, **options)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine`. expire_on_commit=False so rows read in a transaction stay
    usable after it commits (flows pass them on to the next task)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=str)


@contextmanager
def session_scope(factory: sessionmaker[Session] | Engine) -> Iterator[Session]:
    """One transaction: commit when the block ends, roll back if it raises."""
    if isinstance(factory, Engine):
        factory = make_session_factory(factory)
    with factory.begin() as session:
        yield session
