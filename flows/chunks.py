"""What the digitize tasks hand each other: plain dataclasses of ids, keys and field dicts (so a
Dask or Ray task runner could ship them to another machine), one per step of a chunk of
documents, and the failures they carry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from db.extractions import ExtractionRecord
from db.jobs import ClaimedDocument


@dataclass(frozen=True)
class Failure:
    """A document (or an object not yet a document) that could not be processed, and why.

    For a document given back to the queue, `attempt_spent` says whether the attempt counted
    when work on it began stays spent: False when it is not the document's doing (its object
    changed since it was listed)."""

    key: str
    reason: str
    document_id: int | None = None
    attempt_spent: bool = True


def plan_chunks(
    claimed: Sequence[ClaimedDocument], chunk_size: int
) -> tuple[list[list[ClaimedDocument]], list[list[ClaimedDocument]]]:
    """The run's chunks: (worked on side by side, worked on alone and one after another).

    A document with an attempt behind it that did not finish (`ClaimedDocument.attempts`) may
    be what broke that attempt: an error that failed its chunk, or a process killed by the
    kernel (out of memory) or by a native library (a segfault), which takes down every chunk
    in flight. It goes into a chunk of one, and those run after the others, one at a time:
    should it kill this run too, it takes down only itself, its attempt is the only one
    counted (`db.attempts.count_attempts` counts at the start of work, not at the claim), and
    after `DOCFLOW_MAX_ATTEMPTS` it is failed while its former chunk-mates finish. The least
    tried go first, so a document that keeps breaking runs does not hold back the others.
    First attempts go in chunks of `chunk_size` in claim order, as before.
    """
    fresh = [doc for doc in claimed if doc.attempts == 0]
    retried = sorted((doc for doc in claimed if doc.attempts > 0), key=lambda d: (d.attempts, d.id))
    together = [fresh[i : i + chunk_size] for i in range(0, len(fresh), chunk_size)]
    return together, [[doc] for doc in retried]


@dataclass
class Discovery:
    listed: int = 0
    unchanged: int = 0
    registered_new: int = 0
    registered_known: int = 0
    claimed: list[ClaimedDocument] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class OCRDocument:
    """A claimed document whose every page has an OCR result in the cache."""

    claim: ClaimedDocument
    pages: list[dict[str, Any]]  # rows for `pages`: page_index, width, height, ... text


@dataclass
class OCRChunk:
    documents: list[OCRDocument] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    released: list[Failure] = field(default_factory=list)  # back to 'queued': try next run
    pages_ocred: int = 0
    pages_cached: int = 0
    seconds: float = 0.0


@dataclass
class ExtractedChunk:
    records: list[ExtractionRecord] = field(default_factory=list)
    keys: dict[int, str] = field(default_factory=dict)  # document id -> object key
    failures: list[Failure] = field(default_factory=list)
    released: list[Failure] = field(default_factory=list)
    pages: int = 0
    pages_ocred: int = 0
    pages_cached: int = 0
    ocr_seconds: float = 0.0
    extract_seconds: float = 0.0


@dataclass
class StoredChunk:
    documents: int = 0
    extracted: int = 0
    failures: list[Failure] = field(default_factory=list)
    released: int = 0
    # Documents whose claim the job no longer held when the chunk was stored (another run took
    # them, or the job was declared crashed): nothing of them was written or counted.
    lost: list[Failure] = field(default_factory=list)
    pages: int = 0
    pages_ocred: int = 0
    pages_cached: int = 0
    ocr_seconds: float = 0.0
    extract_seconds: float = 0.0
    store_seconds: float = 0.0
    # The archive step (flows/archive.py): documents whose files were written or already there,
    # and those whose files could not be made (their fields are stored all the same).
    archived: int = 0
    archive_skipped: int = 0
    archive_failures: list[Failure] = field(default_factory=list)
    archive_seconds: float = 0.0
