"""The tasks of the `digitize` flow, in the order a document meets them.

    open_job -> resolve_model -> discover_and_claim (flows/discovery.py)
        -> digitize_chunk, mapped over chunks: ocr_chunk -> extract_chunk -> store_chunk
            -> archive_chunk (flows/archive.py: searchable PDF, ALTO, hOCR)
    -> finish_job

The job tasks are in `flows.jobs`, the model registry in `flows.registry`, the clients (object
store, database pool) in `flows.clients` and the retry policy every task shares in
`flows.retries`; a document is read by `docformer.reader.DocumentReader` with the OCR cache of
`flows.ocr_cache`.

Each task is a small function of plain values (the dataclasses of `flows.chunks`: ids, keys
and field dicts), so a Dask or Ray task runner could ship it to another machine. Big things
never travel between tasks: page images are rendered again from the document's bytes where
they are needed, and the OCR result goes from `ocr_chunk` to `extract_chunk` through the OCR
cache in the artifact bucket (`ocr/<engine id>/<sha256>/<page>.json`), which is also what lets
a re-run or a new model skip OCR altogether.

Errors, sorted by what helps:
- transient (`StorageUnavailable`, a lost database connection): the task is retried with
  exponential backoff (`retry_on_transient`); OCR already done sits in the cache, so a retried
  chunk does not OCR again;
- the document's own fault (`DocumentError`: not a document, damaged, too many pages; the object
  is gone or too large; OCR or the model fails on it): that document is marked failed with the
  reason and the run goes on; it is not retried;
- anything else while one document is read or OCR'd (a `ValueError` or `PdfiumError` from a
  text layer, a `RecursionError`): that document alone goes back to the queue with the error's
  type and message (`released_after`), and the rest of its chunk goes on. Each start of work
  on a document counts an attempt (`db.attempts`), so one that fails every run is failed for
  good after `DOCFLOW_MAX_ATTEMPTS`, with the last reason.

One mapped task per chunk (`digitize_chunk`) runs its stages as nested task runs, each with
its own retries, so a chunk is stored as soon as it is extracted, not after every chunk's OCR
has been queued ahead of it.

Claims hold for `claim_ttl_seconds`. While a chunk is worked on, a heartbeat thread
(`flows.claims.ClaimHeartbeat`) renews its job's claims every quarter TTL, however long the
chunk's OCR or extraction takes, so a live run keeps its documents and a killed one loses them:
the next run's discovery marks a job whose claims all ran out `crashed`
(`db.jobs.abandoned_jobs`) and takes its documents. Every write that finishes a document checks
that the job still holds its claim (`store_chunk`): a document another run took meanwhile is
left to that run, never stored twice.

Only `discover_and_claim`, `store_chunk` and the job tasks touch the database; OCR and extraction
only read the bucket, so they can run wherever the CPUs or the GPU are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from db.extractions import ExtractionRecord
from db.jobs import ClaimedDocument
from docformer.document import Document
from docformer.io import DocumentError, ReadLimits
from docformer.reader import NO_IMAGE, DocumentReader
from flows.archive import archive_stored
from flows.chunks import ExtractedChunk, Failure, OCRChunk, OCRDocument, StoredChunk
from flows.claims import ClaimHeartbeat, begin_attempts, run_logger
from flows.clients import object_store, sessions
from flows.ocr_cache import BucketOCRCache
from flows.page_text import page_text
from flows.registry import ModelRef
from flows.retries import TASK_OPTIONS, is_resource_exhaustion, is_transient
from flows.settings import Settings, get_settings
from flows.storage import (
    InvalidName,
    ObjectMissing,
    ObjectStore,
    ObjectTooLarge,
)

# The global concurrency limit that extraction runs under (created by `docflow deploy`).
EXTRACT_LIMIT = "docflow-extract"


# ---------------------------------------------------------------------------------------------
# a document's own failures


class DocumentFailed(Exception):
    """This document cannot be processed; the reason goes into `documents.last_error`."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class DocumentReleased(Exception):
    """Not done, and not the document's fault: give it back to the queue for the next run.
    `attempt_spent`: whether the attempt counted when work on it began stays spent."""

    attempt_spent = True


class DocumentChanged(DocumentReleased):
    """The object's bytes are no longer the claimed content: release it for the next run,
    which reads the new bytes; this attempt was never at the document it claimed."""

    attempt_spent = False


def released(claim: ClaimedDocument, error: DocumentReleased) -> Failure:
    """The release of a claimed document, with its reason."""
    return Failure(claim.key, str(error), claim.id, attempt_spent=error.attempt_spent)


def released_after(claim: ClaimedDocument, error: Exception) -> Failure:
    """An error nobody foresaw while one document was read or OCR'd (a `ValueError` from a
    PDF's text layer, a `RecursionError`): that document goes back to the queue with the
    error's type and message, counted as an attempt, and the rest of its chunk goes on.
    A transient error (storage or database down, the worker out of memory) is raised again:
    the task is retried as before, and a chunk failing for good goes back to the queue."""
    if is_transient(error):
        raise error
    run_logger().warning("%s: unexpected error; back to the queue", claim.key, exc_info=error)
    reason = f"{type(error).__name__}: {error}"
    return Failure(claim.key, reason[:1000], claim.id)


def out_of_resources(stage: str, error: BaseException) -> DocumentReleased:
    """Why a document goes back to the queue when this worker ran out of memory (or the
    database of disk) while `stage`: another run, or this one with more room, can finish it,
    so it must not be failed for good (re-uploading the same bytes would not retry it)."""
    return DocumentReleased(f"out of resources while {stage}: {error}; the next run tries again")


# ---------------------------------------------------------------------------------------------
# pages


def page_row(page_index: int, ocr, has_text_layer: bool) -> dict[str, Any]:
    """The `pages` row of one page, its OCR text included: the text is what full-text search
    reads, and the OCR cache in the bucket is no place to search (`flows.page_text`)."""
    text, heading_text = page_text(ocr)
    return {
        "page_index": page_index,
        "width": ocr.width,
        "height": ocr.height,
        "has_text_layer": has_text_layer,
        "ocr_engine": ocr.engine,
        "word_count": len(ocr.words),
        "text": text,
        "heading_text": heading_text,
    }


# ---------------------------------------------------------------------------------------------
# OCR


def document_reader(settings: Settings, store: ObjectStore) -> DocumentReader:
    """The document reader of one task: the OCR cache in the artifact bucket, the size limit."""
    return DocumentReader(
        BucketOCRCache(store, settings.artifact_bucket),
        limits=ReadLimits(settings.max_document_bytes),
    )


def _read_claimed(
    store: ObjectStore,
    reader: DocumentReader,
    claim: ClaimedDocument,
    max_bytes: int,
    keep_image_size: tuple[int, int],
) -> Document:
    """The claimed document with every page's OCR, or DocumentFailed / DocumentReleased; read
    one page at a time, each image shrunk to `keep_image_size` once it has its OCR."""
    try:
        data = store.read_bytes(claim.bucket, claim.key, max_bytes)
    except ObjectMissing as error:
        raise DocumentFailed("deleted between listing and reading") from error
    except (ObjectTooLarge, InvalidName) as error:
        raise DocumentFailed(str(error)) from error
    if hashlib.sha256(data).hexdigest() != claim.sha256:
        raise DocumentChanged("the object changed since it was listed; the next run reads it")
    try:
        source = f"s3://{claim.bucket}/{claim.key}"
        return reader.read(data, source, keep_image_size=keep_image_size)
    except DocumentError as error:
        if is_resource_exhaustion(error):
            raise out_of_resources("reading", error) from error
        raise DocumentFailed(f"{error.code}: {error.message}") from error


@task(name="ocr-chunk", **TASK_OPTIONS)
def ocr_chunk(claims: Sequence[ClaimedDocument]) -> OCRChunk:
    """OCR every page of a chunk of documents that is not in the OCR cache yet.

    The engine is one per process (PaddleOCR predictors are not thread-safe; the engine locks
    around them) and uses several threads inside each page, so chunks running in parallel
    threads overlap their reading, rendering and cache traffic with each other's OCR.
    """
    started = time.monotonic()
    settings, store = get_settings(), object_store()
    reader = document_reader(settings, store)
    result = OCRChunk()
    for claim in claims:
        try:
            pages = _ocr_document(store, reader, settings, claim)
        except DocumentFailed as failure:
            result.failures.append(Failure(claim.key, failure.reason, claim.id))
            continue
        except DocumentReleased as release:
            result.released.append(released(claim, release))
            continue
        except Exception as error:  # this document's alone: the others go on
            result.released.append(released_after(claim, error))
            continue
        result.documents.append(OCRDocument(claim, pages))
        result.pages_cached += len(pages)
    result.pages_ocred = reader.pages_ocred
    result.pages_cached -= reader.pages_ocred  # text layers count as cached: no OCR ran
    result.seconds = time.monotonic() - started
    return result


def _ocr_document(
    store: ObjectStore, reader: DocumentReader, settings: Settings, claim: ClaimedDocument
) -> list[dict[str, Any]]:
    """Page rows of one document, every page's OCR in the cache once this returns."""
    # Known page count and every page cached (a re-run, a new model): no need to read the file.
    if claim.page_count and (cached := reader.cached_ocr(claim.sha256, claim.page_count)):
        return [page_row(i, ocr, ocr.engine != reader.engine_id) for i, ocr in enumerate(cached)]
    # Only the OCR is kept: no page image outlives its OCR.
    document = _read_claimed(store, reader, claim, settings.max_document_bytes, NO_IMAGE)
    return [page_row(page.index, page.ocr, page.has_text_layer) for page in document.pages]


# ---------------------------------------------------------------------------------------------
# extraction


@task(name="check-extract-limit", **TASK_OPTIONS)
def check_extract_limit() -> int:
    """The global limit extraction runs under, checked before any document is claimed: a run
    that could not extract would only claim documents to give them back. Returns its size."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(EXTRACT_LIMIT).limit
        except ObjectNotFound:
            raise RuntimeError(
                f"the global concurrency limit {EXTRACT_LIMIT!r} does not exist on this Prefect "
                "API: run `docflow deploy` (or use `docflow run`, which creates it)"
            ) from None


@task(name="extract-chunk", **TASK_OPTIONS)
def extract_chunk(ocr: OCRChunk, model: ModelRef, job_id: int) -> ExtractedChunk:
    """Extract the fields of a chunk's documents, in batches, under the global limit.

    The model is loaded once per process (`load_extractor` caches it) and runs on the GPU when
    there is one. Without `strict=True` a limit that was never created is silently unlimited;
    with it, `concurrency` raises `ConcurrencySlotAcquisitionError` ("Concurrency limits
    ['docflow-extract'] must be created before acquiring slots"). `docflow deploy` creates it
    on a server; in-process runs create it first (`flows.deployments.ensure_concurrency_limits`);
    the flow checks it before claiming anything (`check_extract_limit`).
    """
    from prefect.concurrency.sync import concurrency

    from docformer.extraction import describe_error, load_extractor

    settings, store = get_settings(), object_store()
    reader = document_reader(settings, store)
    result = ExtractedChunk(
        failures=list(ocr.failures),
        released=list(ocr.released),
        pages_ocred=ocr.pages_ocred,
        pages_cached=ocr.pages_cached,
        ocr_seconds=ocr.seconds,
    )
    started = time.monotonic()
    if not ocr.documents:
        return result
    extractor = load_extractor(model.local_dir, device=settings.device)
    # The model sees each page at its input size: pages are kept at that size as they are read
    # (the same pixels the model would get from the full page), not at full resolution.
    height, width = extractor.processor.image_size
    ready = []
    for item in ocr.documents:
        try:
            # Rendered again from the bytes; every page's OCR comes from the cache OCR filled.
            document = _read_claimed(
                store, reader, item.claim, settings.max_document_bytes, (height, width)
            )
            ready.append((item, document))
        except DocumentFailed as failure:
            result.failures.append(Failure(item.claim.key, failure.reason, item.claim.id))
        except DocumentReleased as release:
            result.released.append(released(item.claim, release))
        except Exception as error:  # this document's alone: the others go on
            result.released.append(released_after(item.claim, error))
    if not ready:
        return result

    for batch in _batched(ready, settings.extract_batch_size):
        with concurrency(EXTRACT_LIMIT, occupy=1, strict=True):
            outcomes = extractor.extract_each([document for _, document in batch])
        for (item, _), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if is_resource_exhaustion(outcome):
                    reason = str(out_of_resources("extracting", outcome))
                    result.released.append(Failure(item.claim.key, reason, item.claim.id))
                    continue
                reason = f"extraction error: {describe_error(outcome)[1]}"
                result.failures.append(Failure(item.claim.key, reason, item.claim.id))
                continue
            result.records.append(
                ExtractionRecord(
                    document_id=item.claim.id,
                    model_version_id=model.id,
                    job_id=job_id,
                    fields=[f.to_record() for f in outcome.fields.values()],
                    pages=item.pages,
                )
            )
            result.keys[item.claim.id] = item.claim.key
            result.pages += len(item.pages)
    result.extract_seconds = time.monotonic() - started
    return result


def _batched(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------------------------------
# storing


LOST_CLAIM = (
    "not stored: this run no longer held the document's claim (it ran out and another run "
    "took the document, or this job was declared crashed); the run holding it finishes it"
)


@task(name="store-chunk", **TASK_OPTIONS)
def store_chunk(extracted: ExtractedChunk, job_id: int, documents: int) -> StoredChunk:
    """One transaction per chunk: every extraction with its fields and pages (a reprocess
    replaces the extraction of that document and model version), the failures with their
    reasons, the releases, and the job's counters.

    Each of these writes finishes a document only while the job still holds its claim
    (`store_claimed_extractions`, `mark_document_failed`, `release_claim`). A document whose
    claim was lost is left to the run that has it: nothing of it is written or counted here,
    and it is reported in `StoredChunk.lost`."""
    from db.extractions import store_claimed_extractions
    from db.jobs import add_job_counts, mark_document_failed, release_claim, renew_claims
    from db.session import session_scope

    started = time.monotonic()
    stored = StoredChunk(
        documents=documents,
        pages=extracted.pages,
        pages_ocred=extracted.pages_ocred,
        pages_cached=extracted.pages_cached,
        ocr_seconds=extracted.ocr_seconds,
        extract_seconds=extracted.extract_seconds,
    )
    with session_scope(sessions()) as session:
        kept = store_claimed_extractions(session, job_id, extracted.records)
        lost = set(kept.lost)
        stored.extracted = len(kept.stored)
        for record in extracted.records:
            if record.document_id in lost:
                stored.pages -= len(record.pages or [])
                key = extracted.keys.get(record.document_id, str(record.document_id))
                stored.lost.append(Failure(key, LOST_CLAIM, record.document_id))
        for failure in extracted.failures:
            if mark_document_failed(session, failure.document_id, job_id, failure.reason):
                stored.failures.append(failure)
            else:
                stored.lost.append(Failure(failure.key, LOST_CLAIM, failure.document_id))
        for release in extracted.released:
            spent = release.attempt_spent
            if release_claim(
                session, release.document_id, job_id, release.reason, attempt_spent=spent
            ):
                stored.released += 1
            else:
                stored.lost.append(Failure(release.key, LOST_CLAIM, release.document_id))
        add_job_counts(
            session,
            job_id,
            documents_seen=documents - len(stored.lost),
            documents_extracted=stored.extracted,
            documents_failed=len(stored.failures),
            pages=stored.pages,
        )
        # The job's sign of life: its other claims hold for another TTL from now. A killed
        # run stops renewing, its claims run out, and the next run takes the documents.
        renew_claims(session, job_id, get_settings().claim_ttl_seconds)
    if stored.lost:
        run_logger().warning(
            "job %d: %d documents not stored, their claims were lost to another run: %s",
            job_id,
            len(stored.lost),
            ", ".join(f.key for f in stored.lost[:10]),
        )
    stored.store_seconds = time.monotonic() - started
    return stored


@task(name="digitize-chunk", cache_policy=NO_CACHE, persist_result=False)
def digitize_chunk(claims: Sequence[ClaimedDocument], model: ModelRef, job_id: int) -> StoredChunk:
    """One chunk from claimed documents to stored rows: OCR, extraction, then one transaction.

    Not retried itself: each stage retries its own transient errors, and a stage that fails
    for good fails the chunk, which the flow then gives back to the queue (`release_chunk`).
    It starts by counting an attempt at each of its documents (`begin_attempts`).
    """
    begin_attempts(claims, job_id)
    with ClaimHeartbeat(job_id, get_settings().claim_ttl_seconds):
        ocr = ocr_chunk(claims)
        extracted = extract_chunk(ocr, model, job_id)
        stored = store_chunk(extracted, job_id, len(claims))
        if stored.lost:  # another run has them: their archive files are that run's to write
            lost = {f.document_id for f in stored.lost}
            records = [r for r in extracted.records if r.document_id not in lost]
            extracted = dataclasses.replace(extracted, records=records)
        archive_stored(stored, claims, extracted, job_id)
    return stored
