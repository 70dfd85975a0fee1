"""The archive step of `digitize`: each extracted document's searchable PDF, ALTO XML and hOCR
in the archive bucket (`DOCFLOW_ARCHIVE_BUCKET`), each recorded in `archive_outputs`.

Keys are derived from where the document came from, so they are stable and a person finds
them without the database: `<source bucket>/<source key>.searchable.pdf`, `.alto.xml`,
`.hocr.html`. A document's files depend only on its bytes and its OCR, so a file already
recorded for the document (same content, same sha256) and the run's OCR engine id, whose object
is still in the bucket, is not written again: re-running digitize, or re-extracting with a new
model (`--reprocess`), rewrites nothing.

The writers are `docformer.ocr.searchable_pdf` and `docformer.ocr.export`. They need the
document's bytes and every page's OCR, which the OCR step left in the OCR cache, so no page is
rendered or read by OCR again here. A document whose files cannot be written (a PDF pikepdf
cannot rewrite) keeps its fields: the failure is logged and counted, and the next run with
`--reprocess` tries again. Storage and database outages are retried like every other task's.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prefect import get_run_logger, task

from db.archive import ArchiveRecord
from db.jobs import ClaimedDocument
from db.models import ArchiveKind
from docformer.document import Document, Page
from docformer.io import DocumentError, ReadLimits
from docformer.reader import DocumentReader
from flows.chunks import ExtractedChunk, Failure, StoredChunk
from flows.clients import object_store, sessions
from flows.ocr_cache import BucketOCRCache
from flows.retries import TASK_OPTIONS
from flows.settings import Settings, get_settings
from flows.storage import InvalidName, ObjectMissing, ObjectStore, ObjectTooLarge, StorageError

# kind -> (key suffix, content type)
ARCHIVE_FILES: dict[ArchiveKind, tuple[str, str]] = {
    ArchiveKind.SEARCHABLE_PDF: (".searchable.pdf", "application/pdf"),
    ArchiveKind.ALTO: (".alto.xml", "application/alto+xml"),
    ArchiveKind.HOCR: (".hocr.html", "application/xhtml+xml"),
}


def archive_key(source_bucket: str, source_key: str, kind: ArchiveKind) -> str:
    """The archive object of one kind for the document at `source_bucket`/`source_key`."""
    return f"{source_bucket}/{source_key}{ARCHIVE_FILES[kind][0]}"


@dataclass
class ArchivedChunk:
    written: int = 0  # documents whose files were written (all or the missing ones)
    skipped: int = 0  # documents whose every file already existed
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0


class _Unarchivable(Exception):
    """This document's archive files cannot be made; its fields stand."""


@task(name="archive-chunk", **TASK_OPTIONS)
def archive_chunk(
    claims: Sequence[ClaimedDocument], page_counts: Mapping[int, int], job_id: int
) -> ArchivedChunk:
    """Write the missing archive files of a chunk's extracted documents and record them.

    `page_counts` is document id -> pages, from the extraction (a new document's claim does not
    know it yet); it lets the OCR come straight from the cache.
    """
    from db.archive import archived_kinds, record_archive_outputs
    from db.session import session_scope

    started = time.monotonic()
    settings, store = get_settings(), object_store()
    reader = DocumentReader(
        BucketOCRCache(store, settings.artifact_bucket),
        limits=ReadLimits(settings.max_document_bytes),
    )
    engine_id = reader.engine_id
    with sessions()() as session:
        recorded = archived_kinds(session, [claim.id for claim in claims], engine_id)
    result = ArchivedChunk()
    records: list[ArchiveRecord] = []
    for claim in claims:
        have = recorded.get(claim.id, {})
        missing = [
            kind
            for kind in ARCHIVE_FILES
            if kind not in have or not store.exists(have[kind].bucket, have[kind].key)
        ]
        if not missing:
            result.skipped += 1
            continue
        try:
            records += _archive_document(
                store, reader, settings, claim, page_counts.get(claim.id), missing, job_id
            )
            result.written += 1
        except _Unarchivable as error:
            get_run_logger().warning("%s: no archive files: %s", claim.key, error)
            result.failures.append(Failure(claim.key, str(error), claim.id))
    if records:
        with session_scope(sessions()) as session:
            record_archive_outputs(session, records)
    result.seconds = time.monotonic() - started
    return result


def archive_stored(
    stored: StoredChunk, claims: Sequence[ClaimedDocument], extracted: ExtractedChunk, job_id: int
) -> None:
    """Archive the documents of a chunk whose fields `store_chunk` has just stored, and put the
    counts on `stored`. Called from `digitize_chunk` after the fields are safe in the database:
    an archive that cannot be written, even after its retries, never costs a document its
    fields nor gives its claim back; it is logged and counted."""
    page_counts = {record.document_id: len(record.pages) for record in extracted.records}
    done = [claim for claim in claims if claim.id in page_counts]
    if not done:
        return
    try:
        archived = archive_chunk(done, page_counts, job_id)
    except Exception as error:
        get_run_logger().error("archive files of %d documents not written: %s", len(done), error)
        stored.archive_failures = [Failure(c.key, f"archive: {error}", c.id) for c in done]
        return
    stored.archived = archived.written
    stored.archive_skipped = archived.skipped
    stored.archive_failures = archived.failures
    stored.archive_seconds = archived.seconds


def _archive_document(
    store: ObjectStore,
    reader: DocumentReader,
    settings: Settings,
    claim: ClaimedDocument,
    page_count: int | None,
    kinds: Sequence[ArchiveKind],
    job_id: int,
) -> list[ArchiveRecord]:
    """Write `kinds` for one document; the records of what was written."""
    from docformer.ocr.export import to_alto, to_hocr
    from docformer.ocr.searchable_pdf import searchable_pdf

    document, original = _document_with_ocr(store, reader, settings, claim, page_count)
    records = []
    for kind in kinds:
        pdfa, note = None, None
        try:
            if kind is ArchiveKind.SEARCHABLE_PDF:
                made = searchable_pdf(document, original)
                data, note = made.data, made.pdfa_problem
                # A born-digital PDF is the source's own file: whether it is PDF/A is its own
                # business, not checked here (NULL), rather than a "no" we never established.
                pdfa = None if made.kept_as_is else made.pdfa
                if made.kept_as_is:
                    note = "born-digital: the source PDF as it is"
            elif kind is ArchiveKind.ALTO:
                data = to_alto(document)
            else:
                data = to_hocr(document)
        except StorageError:
            raise
        except Exception as error:  # the writer's own failure on this document's content
            raise _Unarchivable(f"{kind.value}: {type(error).__name__}: {error}") from error
        key = archive_key(claim.bucket, claim.key, kind)
        try:
            store.put_bytes(settings.archive_bucket, key, data, content_type=ARCHIVE_FILES[kind][1])
        except InvalidName as error:  # a source key near S3's length limit, with our suffix
            raise _Unarchivable(f"{kind.value}: {error}") from error
        records.append(
            ArchiveRecord(
                document_id=claim.id,
                kind=kind,
                ocr_engine=reader.engine_id,
                bucket=settings.archive_bucket,
                key=key,
                size_bytes=len(data),
                content_sha256=hashlib.sha256(data).hexdigest(),
                pdfa=pdfa,
                note=note,
                job_id=job_id,
            )
        )
    return records


def _document_with_ocr(
    store: ObjectStore,
    reader: DocumentReader,
    settings: Settings,
    claim: ClaimedDocument,
    page_count: int | None,
) -> tuple[Document, bytes]:
    """The document's bytes and its pages with their OCR (from the cache; no page rendered
    when every page is there)."""
    try:
        original = store.read_bytes(claim.bucket, claim.key, settings.max_document_bytes)
    except (ObjectMissing, ObjectTooLarge, InvalidName) as error:
        raise _Unarchivable(str(error)) from error
    if hashlib.sha256(original).hexdigest() != claim.sha256:
        raise _Unarchivable("the object changed since it was read; the next run archives it")
    source = f"s3://{claim.bucket}/{claim.key}"
    count = page_count or claim.page_count or 0
    cached = reader.cached_ocr(claim.sha256, count) if count else None
    if cached is None:
        try:
            return reader.read(original, source), original
        except DocumentError as error:
            raise _Unarchivable(f"{error.code}: {error.message}") from error
    pages = [
        Page(
            index=index,
            width=ocr.width,
            height=ocr.height,
            ocr=ocr,
            # The cache keeps a PDF's text layer under the engine's key with its own engine id.
            has_text_layer=ocr.engine != reader.engine_id,
        )
        for index, ocr in enumerate(cached)
    ]
    return Document(source, claim.sha256, claim.media_type, pages), original


__all__ = ["ARCHIVE_FILES", "ArchivedChunk", "archive_chunk", "archive_key", "archive_stored"]
