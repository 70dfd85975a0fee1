"""A digitize run's claims while it works on them: the attempt each chunk starts (counted
before any work, with the job's sign of life), the heartbeat that keeps the claims while the
chunk is worked on, and the release of a chunk that failed for good.

Claims hold for `claim_ttl_seconds`. While a chunk is worked on, a heartbeat thread
(`ClaimHeartbeat`) renews its job's claims every quarter TTL, however long the chunk's OCR or
extraction takes, so a live run keeps its documents and a killed one loses them: the next run's
discovery marks a job whose claims all ran out `crashed` (`db.jobs.abandoned_jobs`) and takes
its documents. Each start of work on a document counts an attempt (`db.attempts`); a document
with attempts behind it is worked on alone (`flows.chunks.plan_chunks`) and one past
`DOCFLOW_MAX_ATTEMPTS` is failed instead of claimed (`flows.discovery`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from prefect import get_run_logger, task
from sqlalchemy.orm import Session, sessionmaker

from db.jobs import ClaimedDocument
from flows.clients import sessions
from flows.retries import TASK_OPTIONS
from flows.settings import get_settings


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The task run's logger, or this module's outside a run (a task's function called
    directly)."""
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@task(name="begin-attempts", **TASK_OPTIONS)
def begin_attempts(claims: Sequence[ClaimedDocument], job_id: int) -> list[int]:
    """A chunk starts: each of its documents the job still holds counts one more attempt
    (`db.attempts.count_attempts`), and the job's claims hold for another TTL from now (its
    sign of life). One transaction. Returns the ids counted."""
    from db.attempts import count_attempts
    from db.jobs import renew_claims
    from db.session import session_scope

    with session_scope(sessions()) as session:
        renew_claims(session, job_id, get_settings().claim_ttl_seconds)
        return count_attempts(session, job_id, [claim.id for claim in claims])


class ClaimHeartbeat:
    """Renews a job's claims from a background thread while a block of work runs: the job's
    sign of life during a chunk's OCR, extraction, storing and archiving, however long they
    take (before, claims were renewed only between stages, and a chunk longer than the TTL, or
    a run whose chunks waited behind one OCR engine, lost them while still working).

    Every quarter of `ttl_seconds` it calls `db.jobs.renew_claims`, which moves the claims
    past half their time to a full TTL from now: a claim keeps at least a quarter of the TTL
    while the block runs, and every claim of the job is renewed, those of chunks still waiting
    for a thread too. A beat that fails (the database restarting) is logged and the next one
    tries again. Leaving the block, by a return or an error, stops the thread and waits for it
    (a beat is one short statement that waits for no lock); the claims then run out one TTL
    later unless something renews them.
    """

    def __init__(
        self,
        job_id: int,
        ttl_seconds: float,
        session_factory: sessionmaker[Session] | None = None,
    ) -> None:
        self.job_id = job_id
        self.ttl_seconds = ttl_seconds
        self.interval = ttl_seconds / 4
        self.renewed = 0  # claims renewed by the beats so far
        self._sessions = session_factory or sessions()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logger = run_logger()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> ClaimHeartbeat:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"claims-heartbeat-job-{self.job_id}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            # Normally at once; a beat stuck on the network ends on its own and beats no more.
            self._thread.join(timeout=max(self.interval, 30.0))

    def beat(self) -> int:
        """Renew once; returns how many claims moved."""
        from db.jobs import renew_claims
        from db.session import session_scope

        with session_scope(self._sessions) as session:
            return renew_claims(session, self.job_id, self.ttl_seconds)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.renewed += self.beat()
            except Exception as error:  # the claims still hold a while: try again next beat
                self._logger.warning(
                    "job %d: could not renew its claims (the next beat tries again): %s",
                    self.job_id,
                    error,
                )


@task(name="release-chunk", **TASK_OPTIONS)
def release_chunk(
    claims: Sequence[ClaimedDocument], job_id: int, reason: str, attempt_spent: bool = True
) -> int:
    """Give a chunk that failed for good (retries exhausted) back to the queue. With
    `attempt_spent` False (a failure none of its documents can be behind:
    `flows.retries.spares_the_documents`) they get back the attempt the chunk counted."""
    from db.jobs import add_job_counts, release_claim
    from db.session import session_scope

    with session_scope(sessions()) as session:
        released = sum(
            release_claim(session, c.id, job_id, reason, attempt_spent=attempt_spent)
            for c in claims
        )
        add_job_counts(session, job_id, documents_seen=len(claims))
    return released
