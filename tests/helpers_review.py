"""Documents with extracted fields for the review tests, written through `db` as digitize
would write them, with a model version whose reliability table gives a 0.9 threshold."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from db.documents import DocumentObject, register_documents
from db.extractions import ExtractionRecord, store_extractions
from db.jobs import open_job
from db.model_versions import register_model_version

MODEL_FIELDS = ["company", "date", "total"]
# Accurate from 0.9 up: the default threshold is 0.9.
RELIABILITY = [
    {"low": 0.0, "high": 0.9, "count": 40, "correct": 20, "accuracy": 0.5},
    {"low": 0.9, "high": 0.99, "count": 40, "correct": 38, "accuracy": 0.95},
    {"low": 0.99, "high": 1.0, "count": 40, "correct": 40, "accuracy": 1.0},
]


@dataclass(frozen=True)
class SeededDocument:
    document_id: int
    bucket: str
    key: str
    sha256: str


def seed_model(session: Session, name: str = "receipts-v1") -> int:
    metrics = {"fields": {f: {} for f in MODEL_FIELDS}, "reliability": RELIABILITY}
    return register_model_version(
        session, name, f"s3://models/{name}", metrics=metrics, status="active"
    )


def seed_documents(
    session: Session,
    model_version_id: int,
    fields_per_document: Sequence[Sequence[Mapping]],
    *,
    bucket: str = "inbox",
    keys: Sequence[str] | None = None,
    contents: Sequence[bytes] | None = None,
    pages: Sequence[Mapping] | None = None,
) -> list[SeededDocument]:
    """One document per entry of `fields_per_document`, extracted by one job with those
    fields; committed."""
    job_id = open_job(session, "digitize")
    seeded = []
    for i, fields in enumerate(fields_per_document):
        data = contents[i] if contents else f"document {i} {job_id}".encode()
        key = keys[i] if keys else f"scans/{job_id}-{i:03d}.png"
        sha = hashlib.sha256(data).hexdigest()
        (row,) = register_documents(
            session,
            [DocumentObject(bucket, key, sha, len(data), "image/png", etag=f"e{i}")],
        )
        seeded.append(SeededDocument(row.id, bucket, key, sha))
        store_extractions(
            session,
            [
                ExtractionRecord(
                    row.id, model_version_id, job_id, list(fields), list(pages) if pages else None
                )
            ],
        )
    session.commit()
    return seeded
