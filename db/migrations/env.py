"""Alembic environment for the docflow schema.

The database comes from the caller, never from alembic.ini: `db.migrate` passes an open
connection (or a URL) in `config.attributes`; the `alembic` command takes `-x database_url=...`
or the DOCFLOW_DATABASE_URL variable.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

from db.models import Base

config = context.config
target_metadata = Base.metadata

# Any fixed 64-bit number: every process migrating the same database waits on this lock, so two
# workers starting at once do not both try to create the schema.
MIGRATION_LOCK_ID = 0x646F63666C6F77  # "docflow"

# Logging is set up from the ini only for the command line; called from a running program,
# reconfiguring its loggers would silence them.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = (
        config.attributes.get("database_url")
        or context.get_x_argument(as_dictionary=True).get("database_url")
        or os.environ.get("DOCFLOW_DATABASE_URL")
    )
    if not url:
        raise RuntimeError("no database URL: pass -x database_url=... or set DOCFLOW_DATABASE_URL")
    return url


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (`alembic upgrade head --sql`)."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_with_connection(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with_connection(connection)
        return
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        run_with_connection(connection)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
