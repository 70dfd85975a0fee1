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


OCR_ENGINE = "test-engine/1"
# Words on the page, each with its box: what the review screen lets people click.
PAGE_WORDS = [
    ("ACME", (40, 30, 140, 60)),
    ("SDN", (150, 30, 210, 60)),
    ("BHD", (220, 30, 280, 60)),
    ("<script>alert('w')</script>", (40, 90, 300, 115)),
    ("TOTAL", (40, 300, 140, 330)),
    ("19.00", (300, 300, 380, 330)),
    ("RM", (250, 300, 290, 330)),
]


def seed_page_with_ocr(session: Session, model: int, settings, key: str, data: bytes, fields, ocr):
    """A one-page document: its bytes in the inbox bucket at `key`, registered with an
    extraction of `fields` by `model`, and its page's `ocr` in the artifact bucket's OCR cache
    (as digitize leaves it). Returns the seeded document."""
    from flows.clients import object_store
    from flows.ocr_cache import BucketOCRCache

    store = object_store(settings)
    page = {
        "page_index": 0,
        "width": ocr.width,
        "height": ocr.height,
        "ocr_engine": ocr.engine,
        "word_count": len(ocr.words),
    }
    store.put_bytes(settings.inbox_bucket, key, data)
    (document,) = seed_documents(
        session,
        model,
        [fields],
        bucket=settings.inbox_bucket,
        keys=[key],
        contents=[data],
        pages=[page],
    )
    BucketOCRCache(store, settings.artifact_bucket).put(document.sha256, 0, ocr.engine, ocr)
    return document


def seed_scene(settings, session: Session, count: int = 1, key_prefix: str = "scans/") -> list:
    """`count` PNG receipts in the inbox bucket, with their OCR in the artifact bucket's OCR
    cache and an extraction each: company (sure), total (unsure, 9.00 where the page says
    19.00). Returns the `SeededDocument`s."""
    import io

    from PIL import Image, ImageDraw

    from docformer.document import OCRResult, Word
    from flows.clients import object_store

    store = object_store(settings)
    for bucket in (settings.inbox_bucket, settings.artifact_bucket):
        store.ensure_bucket(bucket)
    model = seed_model(session)
    contents, keys = [], []
    for i in range(count):
        image = Image.new("RGB", (420, 380), "white")
        draw = ImageDraw.Draw(image)
        for text, box in PAGE_WORDS:
            draw.rectangle(box, outline=(120, 120, 120))
            draw.text((box[0] + 3, box[1] + 5), text[:12], fill="black")
        draw.text((10, 360), f"receipt {i}", fill="black")
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        contents.append(buffer.getvalue())
        keys.append(f"{key_prefix}{i:03d}.png")
    fields = [
        {
            "name": "company",
            "value": "ACME SDN BHD",
            "confidence": 0.999,
            "page": 0,
            "box": [40, 30, 280, 60],
        },
        {
            "name": "total",
            "value": "9.00",
            "value_num": "9.00",
            "confidence": 0.41,
            "page": 0,
            "box": [300, 300, 380, 330],
        },
    ]
    seeded = []
    for data, key in zip(contents, keys, strict=True):
        ocr = OCRResult(
            420,
            380,
            [Word(text, box, 0.99, line_id=n) for n, (text, box) in enumerate(PAGE_WORDS)],
            engine=OCR_ENGINE,
        )
        seeded.append(seed_page_with_ocr(session, model, settings, key, data, fields, ocr))
    return seeded
