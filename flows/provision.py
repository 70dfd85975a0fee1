"""What `docflow up` and `docflow init` set up: the embedded services (package `embedded`) where
the settings put them on this machine, then the buckets and the database schema the flows
need, on whichever services the settings name."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from embedded.control import ServiceStatus, start
from embedded.control import status as service_status
from embedded.credentials import credentials_path, ensure_credentials
from embedded.prefect_env import make_prefect_home
from embedded.processes import Echo
from embedded.seaweedfs import S3Unavailable
from flows.settings import Settings


def make_credentials(home: Path, echo: Echo = print) -> bool:
    """Generate the embedded default's credentials in `home` unless it has them (the first
    `docflow up`), and say where they are. True when made now: settings built before then do
    not have them yet."""
    _, made = ensure_credentials(home)
    where = credentials_path(home)
    if made:
        echo(f"Credentials: generated in {where} (mode 0600); every docflow command uses them")
    else:
        echo(f"Credentials: {where}")
    return made


def up(settings: Settings, echo: Echo = print) -> None:
    """Start the embedded services that are not running, then create buckets and schema.
    The settings carry the credentials (`make_credentials` first, on a new home)."""
    start(settings, partial(StoreBuckets, settings), echo)
    prepare(settings, echo)
    make_prefect_home(settings, echo)


def status(settings: Settings) -> list[ServiceStatus]:
    """What each service's endpoint is and whether it answers right now."""
    return service_status(settings, partial(StoreBuckets, settings))


class StoreBuckets:
    """The object store as `embedded` checks S3 with it (an `embedded.seaweedfs.BucketLister`):
    its bucket names, a storage error raised as `S3Unavailable` with the same message."""

    def __init__(self, settings: Settings):
        from flows.storage import ObjectStore

        self.store = ObjectStore.from_settings(settings)

    def list_buckets(self) -> list[str]:
        from flows.storage import StorageError

        try:
            return self.store.list_buckets()
        except StorageError as exc:
            raise S3Unavailable(str(exc)) from exc


def prepare(settings: Settings, echo: Echo = print) -> None:
    """Create the buckets and bring the schema to the latest migration, on running services
    (embedded or not). Idempotent."""
    from flows.storage import ObjectStore

    store = ObjectStore.from_settings(settings)
    for bucket in dict.fromkeys(
        [settings.inbox_bucket, settings.artifact_bucket, settings.archive_bucket]
    ):
        if store.ensure_bucket(bucket):
            echo(f"S3: created bucket {bucket}")
    migrate_database(settings, echo)


def migrate_database(settings: Settings, echo: Echo = print) -> None:
    try:
        from db.migrate import upgrade
    except ModuleNotFoundError as exc:
        if exc.name not in {"db.migrate", "db"}:
            raise
        echo("PostgreSQL: no migrations available yet (db.migrate missing); schema not applied")
        return
    upgrade(settings.database_url.get_secret_value())
    echo("PostgreSQL: schema is at the latest migration")
