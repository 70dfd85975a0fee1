"""The `digitize` flow: every new or changed document in a bucket -> OCR -> fields in PostgreSQL.

The recipe (each step a task in `flows/tasks.py`):

1. open a `jobs` row linked to this flow run;
2. resolve the model version (default: the active one);
3. discover new or changed objects, register them by sha256, claim this run's documents
   (failing those out of attempts, `DOCFLOW_MAX_ATTEMPTS`);
4. one task per chunk of documents (`digitize_chunk`): count an attempt at each document and
   renew the claims, OCR (the results cached in the artifact bucket), extract the fields in
   batches under the global concurrency limit `docflow-extract`, and store the chunk's
   extractions, failures and counts in one transaction; then write the stored documents'
   searchable PDF, ALTO and hOCR into the archive bucket (`flows/archive.py`; skipped where
   they exist for the same content and OCR). Documents with an unfinished attempt behind them
   are chunks of one, worked on one at a time after the others (`flows.chunks.plan_chunks`);
5. close the job and publish the summary artifact (a progress artifact moves as chunks finish);
   when the run left fields for review, emit the Prefect event `docflow.review.needed`
   (`announce_review`), which an automation can turn into a notification.

`digitize_upload` is the same run for the keys a `docflow.document.uploaded` event names, once
it has checked the event's bucket and keys. Where and when both run lives in `prefect.yaml`;
in-process runs (`docflow run`) use the ephemeral Prefect API. Chunks run in threads
(`ThreadPoolTaskRunner`): one OCR engine per process uses several cores inside each page, and
the threads overlap one chunk's OCR with another's reading, extraction and storing. For more
than one machine, a Dask or Ray task runner spreads the chunks; the tasks already pass only
small, picklable values.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.artifacts import Progress, digitize_markdown, publish_markdown
from flows.chunks import StoredChunk, plan_chunks
from flows.claims import release_chunk
from flows.discovery import discover_and_claim
from flows.jobs import finish_job, open_job
from flows.registry import resolve_model
from flows.retries import spares_the_documents
from flows.settings import get_settings
from flows.tasks import check_extract_limit, digitize_chunk

# Chunks in flight at once: enough to keep OCR, extraction and storing overlapped on a small
# machine; the OCR engine and the concurrency limit bound the heavy parts anyway.
TASK_THREADS = 4


@flow(name="digitize", task_runner=ThreadPoolTaskRunner(max_workers=TASK_THREADS))
def digitize(
    bucket: str | None = None,
    prefix: str | None = None,
    modified_since: datetime | None = None,
    limit: int | None = None,
    model_version: str | None = None,
    chunk_size: int | None = None,
    reprocess: bool = False,
    keys: list[str] | None = None,
) -> dict[str, Any]:
    """Digitize the new or changed documents of `bucket` under `prefix` (default: the inbox).

    Args:
        bucket: bucket to read (default `DOCFLOW_INBOX_BUCKET`).
        prefix: only keys under this prefix (default `DOCFLOW_INBOX_PREFIX`).
        modified_since: only objects modified at or after this time.
        limit: at most this many documents in this run (the rest wait for the next one).
        model_version: a registered version's name or a saved model's folder (default: the
            active version).
        chunk_size: documents per mapped task (default `DOCFLOW_CHUNK_SIZE`).
        reprocess: extract documents already extracted (or failed) again; the extraction of a
            document by the same model version is replaced, never duplicated.
        keys: exactly these objects (a `docflow.document.uploaded` event names them).

    Returns the job summary (also published as the markdown artifact `digitize-summary`).
    """
    settings = get_settings()
    bucket = bucket or settings.inbox_bucket
    prefix = settings.inbox_prefix if prefix is None else prefix
    chunk_size = chunk_size or settings.chunk_size
    parameters = {
        "bucket": bucket,
        "prefix": prefix,
        "modified_since": modified_since.isoformat() if modified_since else None,
        "limit": limit,
        "model_version": model_version,
        "chunk_size": chunk_size,
        "reprocess": reprocess,
        "keys": keys,
    }
    logger = get_run_logger()
    job_id = open_job("digitize", parameters)
    try:
        check_extract_limit()
        model = resolve_model(model_version)
        discovery = discover_and_claim(
            job_id, bucket, prefix, modified_since, limit, keys, reprocess
        )
        claimed = discovery.claimed
        if not claimed:  # nothing new, or another run holds it: no chunk, no model loaded
            logger.info("no document to work on: none is waiting, or other runs hold them")
        # Documents with an unfinished attempt behind them go alone, after the others.
        chunks, alone = plan_chunks(claimed, chunk_size)
        progress = Progress(len(claimed), "digitize-progress", f"job {job_id}: documents done")
        results: list[StoredChunk] = []
        chunk_errors: list[str] = []
        released = 0

        def collect(chunk: list[Any], outcome: Any) -> None:
            nonlocal released
            if isinstance(outcome, StoredChunk):
                results.append(outcome)
                released += outcome.released
            else:  # retries exhausted (storage or database down): the next run takes them
                reason = f"chunk failed: {type(outcome).__name__}: {outcome}"
                logger.error("%d documents given back to the queue: %s", len(chunk), reason)
                chunk_errors.append(reason)
                spent = not spares_the_documents(outcome)
                released += release_chunk(chunk, job_id, reason[:500], attempt_spent=spent)
            progress.advance(len(chunk))

        stored = digitize_chunk.map(chunks, model=unmapped(model), job_id=unmapped(job_id))
        chunk_of = {future.task_run_id: chunk for chunk, future in zip(chunks, stored, strict=True)}
        for future in as_completed(stored):
            collect(chunk_of[future.task_run_id], future.result(raise_on_failure=False))
        if alone:
            logger.info("%d documents tried before are worked on one at a time", len(alone))
        for chunk in alone:  # one at a time, nothing else in flight: a crash is its own
            future = digitize_chunk.submit(chunk, model=model, job_id=job_id)
            collect(chunk, future.result(raise_on_failure=False))

        summary = finish_job(
            job_id,
            "completed",
            error="; ".join(chunk_errors)[:2000] or None,
            extra_failed=len(discovery.failures),
        ).to_dict()
    except BaseException as error:
        _close_failed(job_id, error)
        raise

    failures = [asdict(f) for f in discovery.failures]
    failures += [asdict(f) for r in results for f in r.failures]
    summary.update(
        model_version=model.name,
        released=released,
        retried_alone=len(alone),
        discovery={
            "listed": discovery.listed,
            "unchanged": discovery.unchanged,
            "registered_new": discovery.registered_new,
        },
        pages_ocred=sum(r.pages_ocred for r in results),
        pages_cached=sum(r.pages_cached for r in results),
        stage_seconds={
            "discover": discovery.seconds,
            "ocr": sum(r.ocr_seconds for r in results),
            "extract": sum(r.extract_seconds for r in results),
            "store": sum(r.store_seconds for r in results),
            "archive": sum(r.archive_seconds for r in results),
        },
        archive={
            "bucket": get_settings().archive_bucket,
            "written": sum(r.archived for r in results),
            "skipped": sum(r.archive_skipped for r in results),
            "failed": [
                {"key": f.key, "reason": f.reason} for r in results for f in r.archive_failures
            ],
        },
        failures=[{"key": f["key"], "reason": f["reason"]} for f in failures],
        review=announce_review(job_id),
    )
    publish_markdown(
        digitize_markdown(summary), key="digitize-summary", description=f"digitize job {job_id}"
    )
    logger.info(
        "job %d: %d documents, %d extracted, %d failed, %d pages (%.1f pages/min)",
        job_id,
        summary["documents"],
        summary["extracted"],
        summary["failed"],
        summary["pages"],
        summary["pages_per_minute"],
    )
    return summary


REVIEW_EVENT = "docflow.review.needed"


def announce_review(job_id: int) -> dict[str, Any] | None:
    """Count the fields job `job_id` left for review (confidence below the field's threshold,
    `db.review_items.job_review_counts`) and, when there are any, emit `docflow.review.needed` about
    resource `docflow.job.<id>` with payload {"job_id", "fields_to_review", "by_field":
    {name: count}, "documents"}. Returns the payload (None when it could not be counted: the
    run's results are stored either way, so that never fails it)."""
    from prefect.events import emit_event

    from db.review_items import job_review_counts
    from flows.clients import sessions

    try:
        with sessions()() as session:
            counts = job_review_counts(session, job_id)
    except Exception:
        get_run_logger().exception("could not count the fields job %d left for review", job_id)
        return None
    payload = {
        "job_id": job_id,
        "fields_to_review": counts.total,
        "by_field": counts.by_field,
        "documents": counts.documents,
    }
    if counts.total:  # Prefect relates the event to this flow run (and its flow) itself
        emit_event(
            event=REVIEW_EVENT,
            resource={
                "prefect.resource.id": f"docflow.job.{job_id}",
                "prefect.resource.name": f"digitize job {job_id}",
            },
            payload=payload,
        )
    return payload


class UploadRefused(ValueError):
    """An upload event the flow will not act on (a bucket not allowed, no usable key)."""


@flow(name="digitize-upload", task_runner=ThreadPoolTaskRunner(max_workers=TASK_THREADS))
def digitize_upload(bucket: str, keys: list[str]) -> dict[str, Any]:
    """Digitize exactly the `keys` of `bucket` that a `docflow.document.uploaded` event names:
    the entry point of the `digitize-on-upload` deployment, whose trigger fills both from the
    event's payload.

    Anyone who can emit an event chooses its payload, so it is checked before anything is read,
    claimed or loaded: the bucket must be the inbox or one of `DOCFLOW_UPLOAD_BUCKETS`, and at
    least one key must be one an S3 request can address (not empty, no `.` or `..` segment).
    Otherwise the run fails with `UploadRefused`, saying why, having opened no job. The other
    invalid keys of an accepted event are failures of its run, as in `digitize`.

    Runs that name documents another run is working on claim none of them (claims are
    exclusive) and end without loading a model. How many of these runs go at once is the
    deployment's concurrency limit in `prefect.yaml`; the rest wait for a slot.
    """
    reason = upload_refusal(get_settings().allowed_upload_buckets, bucket, keys)
    if reason is not None:
        get_run_logger().error("upload event refused, nothing was read or claimed: %s", reason)
        raise UploadRefused(reason)
    return digitize.fn(bucket=bucket, keys=keys)


def upload_refusal(allowed: frozenset[str], bucket: str, keys: list[str]) -> str | None:
    """Why an upload event naming `keys` of `bucket` must not be acted on; None when it may."""
    from flows.storage import InvalidName, check_name

    if bucket not in allowed:
        return (
            f"the event names bucket {bucket!r}, which is neither the inbox bucket nor in "
            f"DOCFLOW_UPLOAD_BUCKETS (allowed: {', '.join(sorted(allowed))})"
        )
    invalid = []
    for key in keys:
        try:
            check_name(bucket, key)
        except InvalidName as error:
            invalid.append(str(error))
    if len(invalid) == len(keys):
        more = f"; and {len(invalid) - 3} more" if len(invalid) > 3 else ""
        shown = "; ".join(invalid[:3]) + more
        return f"the event names no key that can be read ({shown or 'no keys at all'})"
    return None


def _close_failed(job_id: int, error: BaseException) -> None:
    """Close the job as failed (its claims go back to the queue); never hide the real error."""
    from db.jobs import close_job
    from db.models import JobStatus
    from db.session import session_scope
    from flows.clients import sessions

    try:
        with session_scope(sessions()) as session:
            close_job(session, job_id, JobStatus.FAILED, error=f"{type(error).__name__}: {error}")
    except Exception:  # the database may be what failed; the claims then expire on their own
        get_run_logger().exception("could not close job %d", job_id)
