"""The retry policy of every task: transient errors only (a storage outage, a lost database
connection), with exponential backoff; a document's own fault is never retried."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from sqlalchemy.exc import DBAPIError, OperationalError

from flows.storage import StorageUnavailable

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (StorageUnavailable, OperationalError)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    # psycopg2 reports a dropped connection as an InterfaceError wrapped in DBAPIError.
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def retry_on_transient(task, task_run, state) -> bool:
    """Prefect's retry_condition_fn: retry a failed task only when its error is transient."""
    try:
        state.result()
    except Exception as error:
        return is_transient(error)
    return False


# Every task: retried on transient errors only, results kept in memory (they are small and
# their inputs hold database ids that must not be served from a cache).
TASK_OPTIONS: dict[str, Any] = dict(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
