"""The documents of `bench.soak`: good synthetic scans with their OCR already in the cache, and
bad inputs of eight kinds, all under one prefix.

Good documents are `flows.demo.demo_documents` (receipts and invoices, JPEG, PNG, TIFF and
image-only PDF in turn, no scan noise); each one's exact OCR is put in the OCR cache under the
key the flow looks up (as `tests/helpers_flows.put_with_ocr` does), so no page is OCR'd and the
run measures orchestration and storage under faults, not PaddleOCR.

Bad inputs are made with the generators of the tests (tests/test_reading.py,
tests/test_document_budget.py), each instance with bytes of its own (the same bytes under two
keys would be one document). `unreadable_ocr_cache` is a good scan whose cached OCR says it
was written in a schema this docflow does not know: reading it raises a `ValueError`, an error
nobody foresaw, so the document goes back to the queue, is retried alone by later runs, and is
failed once it has used its attempts (`DOCFLOW_MAX_ATTEMPTS`, default 3).
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.report import ROOT

PREFIX = "soak/"

# kind -> the reason class its document must end with (`reason_class` of its last_error)
BAD_KINDS: dict[str, str] = {
    "empty": "empty_document",
    "truncated_pdf": "damaged_document",
    "encrypted_pdf": "encrypted_document",
    "html_named_pdf": "unsupported_format",
    "corrupt_jpeg": "damaged_document",
    "png_bomb": "image_too_large",
    "poster_pdf": "too_many_pixels",
    "unreadable_ocr_cache": "gave up after 3 attempts (ValueError)",
}


@dataclass
class Item:
    key: str
    data: bytes
    kind: str  # "good" or one of BAD_KINDS
    ocr: list[dict[str, Any]]  # cache entries to put, page by page (none for most bad ones)


def bad_count(good: int, bad_fraction: float) -> int:
    """Bad documents so that they are `bad_fraction` of the whole mix, at least one a kind."""
    wanted = math.ceil(good * bad_fraction / (1 - bad_fraction) - 1e-9)
    return max(wanted, len(BAD_KINDS))


def _test_generators() -> dict[str, Callable[..., Any]]:
    """The tests' input generators (tests/ imports its modules by their bare names)."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from test_document_budget import POSTER_PT, blank_pdf
    from test_reading import encode, encrypted_pdf, png_claiming, sample_image, text_pdf

    return {
        "blank_pdf": lambda pages: blank_pdf(pages, POSTER_PT),
        "encode": encode,
        "encrypted_pdf": encrypted_pdf,
        "png_claiming": png_claiming,
        "sample_image": sample_image,
        "text_pdf": text_pdf,
    }


def bad_input(kind: str, index: int, make: dict[str, Callable[..., Any]]) -> tuple[str, bytes]:
    """(file name, bytes) of the `index`-th bad input of `kind`."""
    if kind == "empty":  # zero bytes, then only whitespace: an upload that failed
        return f"empty-{index}.pdf", b" " * index
    if kind == "truncated_pdf":  # a born-digital PDF cut off at two thirds: no %%EOF
        data, _ = make["text_pdf"]([("Invoice", 72, 700), (str(index), 140, 700)])
        return f"truncated-{index}.pdf", data[: len(data) * 2 // 3]
    if kind == "encrypted_pdf":
        return f"encrypted-{index}.pdf", make["encrypted_pdf"](b"secret-%d" % index)
    if kind == "html_named_pdf":  # a login page saved instead of the document
        page = f"<!DOCTYPE html><html><body>Session {index} expired</body></html>"
        return f"login-{index}.pdf", page.encode()
    if kind == "corrupt_jpeg":  # a scan whose upload stopped half-way
        image = make["sample_image"]((800 + 8 * index, 600))
        data = make["encode"](image, "JPEG", quality=90)
        return f"cut-off-{index}.jpg", data[: len(data) // 2]
    if kind == "png_bomb":  # a few bytes that claim 2.5 billion pixels
        return f"bomb-{index}.png", make["png_claiming"](50_000 + index, 50_000)
    if kind == "poster_pdf":  # a few kilobytes, 100+ blank 20-inch pages: 1.6 billion pixels
        return f"posters-{index}.pdf", make["blank_pdf"](100 + index)
    raise ValueError(kind)


def make_inputs(good: int, bad: int, seed: int) -> list[Item]:
    """`good` synthetic scans and `bad` bad inputs (the kinds in turn), shuffled with `seed`."""
    from docformer.ocr.engine import engine_id as ocr_engine_id
    from docformer.synth import render_document
    from flows.demo import DEMO_KINDS, demo_documents

    engine = ocr_engine_id()
    items = []
    for document in demo_documents(good, seed=seed, degrade=False):
        ocr = {**document.ocr.to_dict(), "engine": engine}
        items.append(
            Item(f"{PREFIX}{document.name}{document.suffix}", document.encode(), "good", [ocr])
        )
    make = _test_generators()
    kinds = list(BAD_KINDS)
    for number in range(bad):
        kind, index = kinds[number % len(kinds)], number // len(kinds)
        if kind == "unreadable_ocr_cache":
            document = render_document(
                DEMO_KINDS[index % 2], seed=seed, index=good + index, degrade=False
            )
            ocr = {**document.ocr.to_dict(), "engine": engine, "schema_version": 99}
            key = f"{PREFIX}unreadable-ocr-{index}{document.suffix}"
            items.append(Item(key, document.encode(), kind, [ocr]))
            continue
        name, data = bad_input(kind, index, make)
        items.append(Item(f"{PREFIX}{name}", data, kind, []))
    random.Random(seed).shuffle(items)
    contents = {hashlib.sha256(item.data).hexdigest() for item in items}
    assert len(contents) == len(items), "two inputs have the same bytes"
    return items


def upload(items: list[Item], settings: Any) -> None:
    """Each item's OCR into the cache, then its bytes into the inbox (8 at a time)."""
    from flows.clients import object_store
    from flows.ocr_cache import ocr_cache_key

    store = object_store(settings)

    def put(item: Item) -> None:
        sha256 = hashlib.sha256(item.data).hexdigest()
        for page, ocr in enumerate(item.ocr):
            cache_key = ocr_cache_key(ocr["engine"], sha256, page)
            store.put_json(settings.artifact_bucket, cache_key, ocr)
        store.put_bytes(settings.inbox_bucket, item.key, item.data)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, items))


def cached_pages(settings: Any) -> int:
    """Entries in the OCR cache: unchanged over the soak means no page was OCR'd."""
    from flows.clients import object_store

    return sum(1 for _ in object_store(settings).list_objects(settings.artifact_bucket, "ocr/"))
