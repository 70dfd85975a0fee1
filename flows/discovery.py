"""Discovery, the first task of the `digitize` flow: which objects of the run's scope are new or
changed, their contents registered as documents (by sha256), and the run's documents claimed.

An object that cannot be read is that object's failure, reported in the run's summary, and the
others go on; only a server that cannot be reached fails the task (and it is retried).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from prefect import get_run_logger, task
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.documents import DocumentObject
from db.models import DocumentSource, JobKind
from flows.chunks import Discovery, Failure
from flows.clients import object_store, sessions
from flows.retries import TASK_OPTIONS
from flows.settings import get_settings
from flows.storage import (
    InvalidName,
    ObjectMissing,
    ObjectStore,
    ObjectTooLarge,
    StorageError,
    StorageUnavailable,
)

# Objects read at once while hashing new objects during discovery (network-bound).
DISCOVERY_READERS = 8


@task(name="discover-and-claim", **TASK_OPTIONS)
def discover_and_claim(
    job_id: int,
    bucket: str,
    prefix: str = "",
    modified_since: datetime | None = None,
    limit: int | None = None,
    keys: Sequence[str] | None = None,
    reprocess: bool = False,
) -> Discovery:
    """Find the objects that are new or changed, register their contents, and claim this run's
    documents.

    The run's scope is the listed objects (bucket, prefix, modified since) or the given `keys`.
    An object whose (bucket, key, etag) is already registered is not read again; the others are
    read and hashed, and registered by sha256 (the same bytes under two keys are one document).
    Then the documents of the scope that are waiting (new, queued, or with an expired claim;
    also extracted and failed ones when `reprocess`) are claimed with SKIP LOCKED, so two runs
    at once never take the same document. A waiting document that already had
    `DOCFLOW_MAX_ATTEMPTS` attempts is failed with its last reason instead ("gave up after N
    attempts: …", `db.attempts.give_up_exhausted`), a failure of this run like the others;
    a `reprocess` run, asked to do every document again, gives up on none.
    """
    from db.attempts import give_up_exhausted
    from db.documents import known_objects, register_documents
    from db.jobs import abandoned_jobs, claim_documents, mark_crashed_jobs
    from db.session import session_scope

    started = time.monotonic()
    settings, store = get_settings(), object_store()
    discovery = Discovery()
    if keys is not None:
        listed = []
        for key in dict.fromkeys(keys):
            try:
                listed.append(store.stat(bucket, key))
            except ObjectMissing:
                discovery.failures.append(Failure(key, "no such object (deleted after upload?)"))
            except InvalidName as error:  # an event may name any key, `../x.pdf` included
                discovery.failures.append(Failure(key, f"not a valid object key: {error}"))
            except StorageUnavailable:
                raise
            except StorageError as error:  # access denied to this key alone, and the like
                discovery.failures.append(Failure(key, f"cannot read the object: {error}"))
    else:
        listed = [
            info
            for info in store.list_objects(bucket, prefix)
            if modified_since is None
            or info.last_modified is None
            or info.last_modified >= modified_since
        ]
    discovery.listed = len(listed)

    with sessions()() as session:
        known = known_objects(session, bucket, {o.key: o.etag or None for o in listed})
    to_read = [info for info in listed if info.key not in known]
    discovery.unchanged = len(listed) - len(to_read)
    if limit is not None:
        to_read = to_read[:limit]

    objects: list[DocumentObject] = []
    with ThreadPoolExecutor(DISCOVERY_READERS) as readers:
        results = readers.map(
            lambda info: _hash_object(store, bucket, info, settings.max_document_bytes), to_read
        )
        for result in results:
            if isinstance(result, Failure):
                discovery.failures.append(result)
            else:
                objects.append(result)

    failed_keys = {f.key for f in discovery.failures}
    scope = [info.key for info in listed if info.key not in failed_keys]
    with session_scope(sessions()) as session:
        # Runs killed without a word (SIGKILL, a lost machine) are found by their expired
        # claims: say so on their job rows, and give their documents back before claiming.
        dead = abandoned_jobs(
            session, JobKind.DIGITIZE, settings.claim_ttl_seconds, exclude=[job_id]
        )
        if dead:
            mark_crashed_jobs(
                session,
                job_ids=dead,
                error="no sign of life for longer than the claim TTL "
                f"({settings.claim_ttl_seconds} s): the process running it was lost",
            )
            get_run_logger().warning("marked jobs %s crashed (their claims expired)", dead)
        registered = register_documents(session, objects)
        discovery.registered_new = sum(r.is_new for r in registered)
        discovery.registered_known = len(registered) - discovery.registered_new
        document_ids = _documents_of_keys(session, bucket, scope)
        if not reprocess:
            gave_up = give_up_exhausted(session, settings.max_attempts, document_ids)
            discovery.failures += [Failure(g.key, g.reason, g.id) for g in gave_up]
        discovery.claimed = claim_documents(
            session,
            job_id,
            limit=limit if limit is not None else len(document_ids),
            ttl_seconds=settings.claim_ttl_seconds,
            document_ids=document_ids,
            reprocess=reprocess,
            max_attempts=None if reprocess else settings.max_attempts,
        )
    discovery.seconds = time.monotonic() - started
    get_run_logger().info(
        "listed %d objects (%d unchanged), registered %d new documents, claimed %d",
        discovery.listed,
        discovery.unchanged,
        discovery.registered_new,
        len(discovery.claimed),
    )
    return discovery


def _hash_object(store: ObjectStore, bucket: str, info, max_bytes: int) -> DocumentObject | Failure:
    from docformer.io import sniff_media_type

    try:
        data = store.read_bytes(bucket, info.key, max_bytes)
    except ObjectMissing:
        return Failure(info.key, "deleted between listing and reading")
    except (ObjectTooLarge, InvalidName) as error:
        return Failure(info.key, str(error))
    except StorageUnavailable:
        raise  # the server, not this object: the task is retried, the run fails if it stays
    except StorageError as error:
        # Refused for this object alone (access denied by a policy, an archived object): its
        # failure, so the other objects of the run go on; the next run tries it again.
        return Failure(info.key, f"cannot read the object: {error}")
    return DocumentObject(
        bucket=bucket,
        key=info.key,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        # Unreadable content is registered too: it then fails with the reason, visibly.
        media_type=sniff_media_type(data) or "application/octet-stream",
        etag=info.etag or None,
    )


def _documents_of_keys(session: Session, bucket: str, keys: Sequence[str]) -> list[int]:
    ids: set[int] = set()
    for start in range(0, len(keys), 10_000):
        ids.update(
            session.scalars(
                select(DocumentSource.document_id).where(
                    DocumentSource.bucket == bucket,
                    DocumentSource.key.in_(keys[start : start + 10_000]),
                )
            )
        )
    return sorted(ids)


__all__ = ["DISCOVERY_READERS", "discover_and_claim"]
