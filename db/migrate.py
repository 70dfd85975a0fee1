"""Run the schema migrations from Python: `upgrade(url)`, `downgrade(url)`, `current(url)`.

The Alembic files are found next to this module, so the same calls work from a source checkout
and from an installed package.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

DB_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = DB_DIR / "alembic.ini"
MIGRATIONS_DIR = DB_DIR / "migrations"

# Alembic keeps the running migration environment in module globals (`alembic.context`), so
# two threads of one process must not migrate at once. Across processes, env.py takes a
# PostgreSQL advisory lock instead.
_ALEMBIC_LOCK = threading.Lock()


def alembic_config(database_url: str | None = None) -> Config:
    """The Alembic config of this package, pointed at `database_url`."""
    config = Config(str(ALEMBIC_INI))
    # Set explicitly too: `%(here)s` in the ini already resolves to this folder, but a config
    # copied elsewhere must still find the scripts that belong to this code.
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["configure_logger"] = False
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def _run(database_url: str, action, revision: str) -> None:
    config = alembic_config(database_url)
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with _ALEMBIC_LOCK, engine.begin() as connection:
            config.attributes["connection"] = connection
            action(config, revision)
    finally:
        engine.dispose()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to `revision` (all of it by default), in one transaction."""
    _run(database_url, command.upgrade, revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Take the schema down to `revision`; "base" removes every table, view and type."""
    _run(database_url, command.downgrade, revision)


def current(database_url: str) -> str | None:
    """The revision the database is at, or None for a database never migrated."""
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head() -> str:
    """The newest revision this code knows."""
    head_revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head_revision is not None
    return head_revision
