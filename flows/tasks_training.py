"""Tasks shared by the `finetune` and `pretrain` flows: turning what the database and the buckets
hold into training data, and storing a trained model as a new version.

Pages come back the way digitize saw them: the document's bytes rendered again, each page turned
by its OCR's rotation, and its OCR result taken from (in order) the OCR given with a labelled
document (`ocr/supplied/...`), the engine's cache (`ocr/<engine>/...`), or PaddleOCR now (and
then cached). Images are shrunk to the model's input size at once, so a few thousand pages fit
in memory.

Labels and OCR belong to a document's content (its sha256), and the object a document was
registered from may since hold other bytes (a file labelled again after a rescan, an upload
over it). The bytes read are checked against the sha256 (`check_content`): a document whose
object changed is left out, never trained on with labels of other bytes.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from docformer.training.data import TrainingExample
from flows.clients import object_store, sessions
from flows.ocr_cache import BucketOCRCache
from flows.registry import ModelRef
from flows.retries import TASK_OPTIONS
from flows.settings import get_settings


@dataclass
class PageSource:
    """Where one document's bytes are, what it is, and its labels (empty for pre-training)."""

    document_id: int
    bucket: str
    key: str
    sha256: str
    labels: dict[str, str]


# The source of a value no person gave: a reviewed document's field confident enough to skip
# review, taken as the model read it (the audit sample measures how often that is right).
ACCEPTED_BY_DEFAULT = "accepted"


@dataclass
class SourcedExample(TrainingExample):
    """A labelled document as a `TrainingExample`, with the source of each of its labels."""

    sources: dict[str, str] = field(default_factory=dict)  # field name -> label source

    @property
    def labelled(self) -> set[str]:
        """The names a person labelled (imported or reviewed): what a holdout may score."""
        return {n for n in self.fields if self.sources.get(n) != ACCEPTED_BY_DEFAULT}


def labelled_names(example: Any) -> set[str]:
    """The names a person labelled in `example`: what a holdout may score it on."""
    return example.labelled if isinstance(example, SourcedExample) else set(example.fields)


class DocumentChanged(Exception):
    """The object a document was registered from now holds other bytes."""


def check_content(data: bytes, sha256: str, bucket: str, key: str) -> None:
    """DocumentChanged unless `data` (read from `bucket`/`key`) is the document `sha256`."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DocumentChanged(
            f"s3://{bucket}/{key} now holds other bytes than the labelled document "
            f"{sha256[:12]}…; its labels and OCR describe the bytes that were there before"
        )


def document_pages(source: PageSource, image_size: tuple[int, int] | None):
    """[(image, OCRResult)] of one document, OCR'd now only for pages no cache holds; each page
    shrunk to `image_size` as it is read (as `shrink_image` does), before the next is rendered."""
    from docformer.io import ReadLimits
    from docformer.reader import DocumentReader

    settings, store = get_settings(), object_store()
    cache = BucketOCRCache(store, settings.artifact_bucket, supplied_first=True)
    reader = DocumentReader(cache, limits=ReadLimits(settings.max_document_bytes))
    data = store.read_bytes(source.bucket, source.key, settings.max_document_bytes)
    check_content(data, source.sha256, source.bucket, source.key)
    keep = (int(image_size[0]), int(image_size[1])) if image_size is not None else None
    document = reader.read(data, source.key, keep_image_size=keep)
    return [(page.image, page.ocr) for page in document.pages]


@task(name="load-labelled-examples", **TASK_OPTIONS)
def load_labelled_examples(image_size: tuple[int, int] | None = (512, 384)) -> list[Any]:
    """Every document with labels as a `TrainingExample` named by its sha256 (so the
    train/holdout split does not move when a file is renamed), with `sources`: the source of
    each label (`labelled_documents`: the latest value of a field wins, whoever gave it).
    Unreadable ones are skipped."""
    from db.labels import labelled_documents
    from db.review_items import unreviewed_fields
    from docformer.io import DocumentError
    from flows.storage import ObjectMissing

    with sessions()() as session:
        labelled = labelled_documents(session)
        reviewed = [item.document_id for item in labelled if "review" in item.sources.values()]
        unreviewed = unreviewed_fields(session, reviewed)
    examples = []
    for item in labelled:
        labels, sources = dict(item.labels), dict(item.sources)
        if item.document_id in unreviewed:
            # A reviewed document: its other fields are what the model read where it was
            # confident enough to skip review, or it waits until the unsure ones are decided
            # (training on them as absent would teach the model to miss them).
            rest = unreviewed[item.document_id]
            if rest.waiting - labels.keys():
                waiting = ", ".join(sorted(rest.waiting - labels.keys()))
                get_run_logger().info("not yet: %s still waits for review of %s", item.key, waiting)
                continue
            for name, value in rest.accepted.items():
                if name not in labels:
                    labels[name], sources[name] = value, ACCEPTED_BY_DEFAULT
        source = PageSource(item.document_id, item.bucket, item.key, item.sha256, labels)
        try:
            pages = document_pages(source, image_size)
        except (DocumentError, DocumentChanged, ObjectMissing) as error:
            get_run_logger().warning("skipping %s: %s", item.key, error)
            continue
        examples.append(SourcedExample(item.sha256, pages, labels, sources))
    return examples


def label_sources(examples: list[Any]) -> dict[str, int]:
    """How many labels of `examples` each source gave ({"import": 120, "review": 31}); labels
    of examples that are not `SourcedExample`s count under "unknown"."""
    counts: dict[str, int] = {}
    for example in examples:
        sources = getattr(example, "sources", {})
        for name in example.fields:
            source = sources.get(name, "unknown")
            counts[source] = counts.get(source, 0) + 1
    return dict(sorted(counts.items()))


@task(name="load-backlog-pages", **TASK_OPTIONS)
def load_backlog_pages(
    max_pages: int, image_size: tuple[int, int] | None = (512, 384)
) -> tuple[list[Any], int]:
    """Pages of documents digitize has already read (their OCR is cached), newest first, up to
    `max_pages`; no labels needed. Returns (pages, documents used)."""
    from sqlalchemy import select

    from db.models import Document, DocumentStatus

    with sessions()() as session:
        rows = session.execute(
            select(Document.id, Document.source_bucket, Document.source_key, Document.sha256)
            .where(Document.status == DocumentStatus.EXTRACTED)
            .order_by(Document.id.desc())
        ).all()
    pages, documents = [], 0
    for row in rows:
        if len(pages) >= max_pages:
            break
        try:
            pages += document_pages(PageSource(*row, {}), image_size)[: max_pages - len(pages)]
            documents += 1
        except Exception as error:  # a deleted or changed object: train on the others
            get_run_logger().warning("skipping %s: %s", row.source_key, error)
    return pages, documents


def training_folder() -> Path:
    """A fresh folder for a training run's output, under $DOCFLOW_HOME/training."""
    root = Path(get_settings().home).expanduser().resolve() / "training"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root))


@task(name="store-model-version", **TASK_OPTIONS)
def store_model_version(
    folder: str, kind: str, job_id: int, parent: ModelRef, metrics: dict[str, Any]
) -> ModelRef:
    """Upload the model folder to `s3://<artifact bucket>/models/<name>/` and register it as a
    candidate version whose parent is `parent`. Training state (optimizer checkpoints) stays
    behind: a version is what extraction loads, nothing more."""
    from db.model_versions import register_model_version
    from db.session import session_scope

    settings = get_settings()
    folder_path = Path(folder)
    shutil.rmtree(folder_path / "checkpoint", ignore_errors=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    name = f"{kind}-{stamp}-job{job_id}"
    prefix = f"models/{name}"
    object_store().upload_folder(folder_path, settings.artifact_bucket, prefix)
    uri = f"s3://{settings.artifact_bucket}/{prefix}"
    with session_scope(sessions()) as session:
        version_id = register_model_version(
            session, name, uri, parent_id=parent.id, metrics=metrics
        )
    return ModelRef(version_id, name, uri, str(folder_path))
