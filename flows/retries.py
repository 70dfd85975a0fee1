"""The retry policy of every task, and how errors are told apart.

Three kinds of error, sorted by what helps:

- **transient** (`is_transient`): a storage outage, a lost database connection, the server
  restarting, a serialization failure or deadlock, too many connections. Retried with
  exponential backoff: a few seconds later the same work succeeds.
- **out of resources** (`is_resource_exhaustion`): this worker ran out of memory (Python's
  MemoryError, CUDA's out-of-memory, onnxruntime failing to allocate), or the database server
  did (disk full, out of memory, a configured limit), or a statement ran past
  `statement_timeout`. Never the document's fault, so a document must never be marked failed
  for it: its work goes back to the queue for a later run. A worker's memory frees up as the
  other tasks on it finish, so a task that raised it is retried with backoff; the server's
  disk does not fill down in seconds, and the same statement meets the same timeout, so those
  are not retried in the task: its chunk goes back to the queue at once, with the reason.
- **the document's own fault** (anything else, e.g. `docformer.io.DocumentError`): never
  retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2.errors
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from sqlalchemy.exc import DBAPIError, OperationalError

from flows.storage import StorageUnavailable

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (StorageUnavailable, OperationalError)

# PostgreSQL errors that retrying within seconds does not cure (psycopg2 raises all of them as
# OperationalError, like a lost connection): class 53 "insufficient resources" but for too
# many connections (53300, which others' disconnecting cures), and 57014, a statement cancelled
# by `statement_timeout` (or by hand), which the same statement on the same rows meets again.
DATABASE_OUT_OF_RESOURCES: tuple[type[BaseException], ...] = (
    psycopg2.errors.DiskFull,  # 53100
    psycopg2.errors.OutOfMemory,  # 53200
    psycopg2.errors.ConfigurationLimitExceeded,  # 53400, e.g. temp_file_limit
    psycopg2.errors.QueryCanceled,  # 57014
)

# How the libraries a worker runs say they ran out of memory, when they do not raise
# MemoryError: torch raises torch.OutOfMemoryError (a RuntimeError; older versions a plain
# RuntimeError with the message), onnxruntime (PaddleOCR's runtime) a RuntimeException whose
# message names the failed allocation, CUDA libraries their status names.
OUT_OF_MEMORY_TYPE_NAMES = frozenset({"OutOfMemoryError", "ResourceExhaustedError"})
OUT_OF_MEMORY_MESSAGES = (
    "out of memory",
    "can't allocate memory",  # torch's CPU allocator
    "cannot allocate memory",  # ENOMEM
    "failed to allocate memory",
    "bad_alloc",
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and the errors it was raised from or during (a DocumentError wrapping the OCR
    engine's MemoryError, a DBAPIError wrapping psycopg2's), each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, DBAPIError) and isinstance(current.orig, BaseException):
            yield current.orig
        current = current.__cause__ or current.__context__


def is_worker_out_of_memory(error: BaseException) -> bool:
    """Whether `error` (or one it was raised from) says this process ran out of memory."""
    for cause in _causes(error):
        if isinstance(cause, MemoryError) or type(cause).__name__ in OUT_OF_MEMORY_TYPE_NAMES:
            return True
        if isinstance(cause, psycopg2.Error | DBAPIError):
            continue  # the server's own "out of memory" is DATABASE_OUT_OF_RESOURCES
        message = str(cause).lower()
        if any(words in message for words in OUT_OF_MEMORY_MESSAGES):
            return True
    return False


def is_database_out_of_resources(error: BaseException) -> bool:
    """Whether `error` is PostgreSQL out of disk, memory or a configured limit, or a statement
    cancelled by its timeout (`DATABASE_OUT_OF_RESOURCES`)."""
    return any(isinstance(cause, DATABASE_OUT_OF_RESOURCES) for cause in _causes(error))


def is_resource_exhaustion(error: BaseException) -> bool:
    """Out of resources, the worker's or the database's: never the document's fault. A caller
    that would mark a document failed for `error` gives it back to the queue instead."""
    return is_worker_out_of_memory(error) or is_database_out_of_resources(error)


def is_transient(error: BaseException) -> bool:
    """Whether a task that raised `error` is worth retrying in a few seconds."""
    if is_database_out_of_resources(error):
        return False
    if is_worker_out_of_memory(error) or isinstance(error, TRANSIENT_ERRORS):
        return True
    # psycopg2 reports a dropped connection as an InterfaceError wrapped in DBAPIError.
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def spares_the_documents(error: BaseException) -> bool:
    """Whether a chunk that failed for good with `error` failed for a reason none of its
    documents can be behind: storage or the database unreachable, or the database out of
    room or time. Its documents then get back the attempt the chunk counted
    (`db.attempts`). A worker out of memory is not one: a document may be too big for it, and
    worked on alone next time (`flows.chunks.plan_chunks`) it shows which one."""
    if is_database_out_of_resources(error):
        return True
    return is_transient(error) and not is_worker_out_of_memory(error)


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
