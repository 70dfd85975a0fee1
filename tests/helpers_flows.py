"""Helpers for the flow-level fault and security tests (test_reliability, test_security).

- a DocFormerv2 with random weights and a tiny generation budget: these tests check what
  happens to documents, not what the model reads, and it costs no training;
- many small, distinct page images with their OCR prepared in the cache, so hundreds of
  documents go through the real flow without running PaddleOCR;
- spare PostgreSQL and SeaweedFS servers (the project's own scripts) that a test may stop and
  start without disturbing the session's shared ones;
- a gate: a lock on `documents` that holds a run at the moment it registers what it listed,
  so a test can change the world (delete an object, stop a server) at a known point of a
  real run, then let it go on.
"""

from __future__ import annotations

import contextvars
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from conftest import LOCAL, ROOT
from helpers_services import free_port_block, script_env
from PIL import Image, ImageDraw
from sqlalchemy.orm import Session

from docformer.document import OCRResult, Word
from flows.settings import Settings

FIELDS = ["company", "date", "total"]


# --- the model -------------------------------------------------------------------------------


def build_random_model(folder: Path, max_new_tokens: int = 6) -> Path:
    """A DocFormerv2 with random weights, saved as a model folder, generating at most
    `max_new_tokens` tokens: extraction runs for real and costs almost nothing."""
    import torch

    from docformer.generation import build_prompt
    from docformer.models.docformerv2 import (
        DocFormerV2Config,
        DocFormerV2ForConditionalGeneration,
        DocFormerV2Processor,
    )
    from docformer.tokenization import train_tokenizer

    if (folder / "model.safetensors").is_file():
        return folder
    texts = [build_prompt(FIELDS)] * 3 + [
        f"RECEIPT {i} TOTAL {i}.00 DATE 2024-01-{i:02d}" for i in range(1, 29)
    ]
    tokenizer = train_tokenizer(texts, vocab_size=200)
    config = DocFormerV2Config.from_preset(
        "tiny", vocab_size=len(tokenizer), d_model=32, d_kv=8, num_heads=4, d_ff=64,
        num_layers=1, num_decoder_layers=1, image_size=[64, 48], patch_size=16,
        max_text_tokens=256, dropout_rate=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = DocFormerV2ForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    DocFormerV2Processor.from_config(config, tokenizer).save_pretrained(folder)
    info = {"fields": FIELDS, "model_name": "random-tiny", "max_new_tokens": max_new_tokens}
    (folder / "metrics.json").write_text(json.dumps(info))
    return folder


# --- documents with their OCR prepared ---------------------------------------------------------


def numbered_page(number: int, size: tuple[int, int] = (160, 120)) -> tuple[bytes, OCRResult]:
    """A small PNG page that differs from every other number's, and its OCR (two lines)."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    draw.text((8, 8), f"RECEIPT {number}", fill=0)
    draw.text((8, 40), f"TOTAL {number}.00", fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    words = [
        Word("RECEIPT", (8, 8, 60, 20), 0.99, 0),
        Word(str(number), (64, 8, 90, 20), 0.99, 0),
        Word("TOTAL", (8, 40, 50, 52), 0.99, 1),
        Word(f"{number}.00", (54, 40, 100, 52), 0.99, 1),
    ]
    return buffer.getvalue(), OCRResult(size[0], size[1], words)


def put_with_ocr(settings: Settings, key: str, data: bytes, pages: list[OCRResult]) -> None:
    """The object in the inbox, and its pages' OCR in the cache, as if OCR'd by an earlier run
    (the cache is keyed by content, so this is exactly what a re-run would find)."""
    from docformer.ocr.engine import engine_id as ocr_engine_id
    from flows.clients import object_store
    from flows.ocr_cache import ocr_cache_key

    store, engine_id = object_store(settings), ocr_engine_id()
    sha256 = hashlib.sha256(data).hexdigest()
    for index, ocr in enumerate(pages):
        cached = {**ocr.to_dict(), "engine": engine_id}
        store.put_json(settings.artifact_bucket, ocr_cache_key(engine_id, sha256, index), cached)
    store.put_bytes(settings.inbox_bucket, key, data)


def put_numbered_pages(settings: Settings, count: int, prefix: str, start: int = 0) -> list[str]:
    """`count` one-page documents under `prefix`, their OCR in the cache; returns the keys."""
    from concurrent.futures import ThreadPoolExecutor

    def put(number: int) -> str:
        key = f"{prefix}page-{number:05d}.png"
        data, ocr = numbered_page(number)
        put_with_ocr(settings, key, data, [ocr])
        return key

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(put, range(start, start + count)))


# --- reading the database --------------------------------------------------------------------


def query(url: str, sql: str, **params) -> list[sa.Row]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))
    finally:
        engine.dispose()


def expire_claims(session: Session, document_ids: list[int]) -> None:
    """Their claims ran out (as after a TTL with no sign of life from the job holding them)."""
    session.execute(
        sa.text(
            "UPDATE documents SET claim_expires_at = now() - interval '1 second' "
            "WHERE id = ANY(:ids)"
        ),
        {"ids": document_ids},
    )


def document_states(url: str) -> dict[str, sa.Row]:
    """{source key: row with status, last_error, extractions, fields, pages}."""
    rows = query(
        url,
        """
        SELECT s.key, d.id, d.status, d.last_error,
               (SELECT count(*) FROM extractions e WHERE e.document_id = d.id) AS extractions,
               (SELECT count(*) FROM fields f JOIN extractions e ON e.id = f.extraction_id
                 WHERE e.document_id = d.id) AS fields,
               (SELECT count(*) FROM pages p WHERE p.document_id = d.id) AS pages
        FROM document_sources s JOIN documents d ON d.id = s.document_id
        """,
    )
    return {row.key: row for row in rows}


# --- running a flow in the background --------------------------------------------------------


class Background:
    """A flow call in a thread of this process, with this context (the Prefect API of the
    test); `result()` waits and returns its value or raises its error."""

    def __init__(self, fn: Callable[[], Any]):
        self._value: Any = None
        self._error: BaseException | None = None
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run, fn), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as error:  # handed to the test in result()
            self._error = error

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 240) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the flow did not finish in time"
        if self._error is not None:
            raise self._error
        return self._value


DIGITIZE_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from flows.digitize import digitize
print("SUMMARY " + json.dumps(digitize(**json.loads(sys.argv[1])), default=str), flush=True)
"""


def start_digitize_process(
    parameters: dict[str, Any], env: dict[str, str], log: Path
) -> subprocess.Popen:
    """`digitize(**parameters)` in a process of its own (a worker), talking to the Prefect API
    and the services that `env` names. Its output goes to the file `log` (a pipe that nobody
    reads while the test waits could fill up and stop it)."""
    with open(log, "w") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-c", DIGITIZE_SCRIPT, json.dumps(parameters)],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def process_env(**extra: str) -> dict[str, str]:
    """This process's environment (the test's DOCFLOW_*) plus the Prefect API it uses."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env.update(extra)
    return env


def wait_for(condition: Callable[[], Any], timeout: float = 120, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except sa.exc.OperationalError:  # the database may be down on purpose
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {condition}")


# --- the gate --------------------------------------------------------------------------------


@contextmanager
def documents_locked(url: str) -> Iterator[Callable[[], None]]:
    """Hold `LOCK TABLE documents IN SHARE MODE` until the block ends.

    A digitize run lists and hashes its objects, then stops at its first write to `documents`
    (registering what it found, or claiming) until the lock goes. Yields
    `wait_until_blocked(runs=1)`, which returns once that many runs wait on the lock: from then
    until the block ends, they have read the bucket's listing and claimed nothing yet.
    """
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    conn = engine.connect()
    transaction = conn.begin()
    conn.execute(sa.text("LOCK TABLE documents IN SHARE MODE"))
    holder = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()

    def wait_until_blocked(runs: int = 1) -> None:
        sql = (
            "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted AND pid <> :holder "
            "AND relation = 'documents'::regclass"
        )
        wait_for(lambda: query(url, sql, holder=holder)[0][0] >= runs, timeout=180, every=0.05)

    try:
        yield wait_until_blocked
    finally:
        try:
            transaction.rollback()
            conn.close()
        except sa.exc.DBAPIError:  # the server was restarted under the lock on purpose
            pass
        engine.dispose()


# --- spare servers ---------------------------------------------------------------------------


@dataclass
class SparePostgres:
    """A PostgreSQL 15 of one test's own, on a free port, started by deploy/local/postgres.sh."""

    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/docflow"

    def _script(self, action: str) -> None:
        env = script_env(
            PGDATA_DIR=str(self.data_dir), PGPORT=str(self.port), PGDATABASES="docflow"
        )
        subprocess.run(
            [str(LOCAL / "postgres.sh"), action], env=env, check=True, capture_output=True
        )

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        self._script("stop")


@contextmanager
def spare_postgres(tmp_path: Path) -> Iterator[SparePostgres]:
    data_dir = tmp_path / "spare-postgres"
    data_dir.mkdir()
    for folder in (tmp_path, tmp_path.parent, tmp_path.parent.parent):
        os.chmod(folder, 0o755)  # the postgres user must reach its data dir when we are root
    server = SparePostgres(data_dir, free_port_block(1))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class SpareS3:
    """A SeaweedFS of one test's own, started by deploy/local/seaweedfs.sh; data survives
    stop and start."""

    data_dir: Path
    base_port: int
    access_key: str
    secret_key: str

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.base_port + 3}"

    def _script(self, action: str) -> None:
        env = script_env(
            S3_DIR=str(self.data_dir),
            S3_BASE_PORT=str(self.base_port),
            AWS_ACCESS_KEY_ID=self.access_key,
            AWS_SECRET_ACCESS_KEY=self.secret_key,
        )
        subprocess.run(
            [str(LOCAL / "seaweedfs.sh"), action], env=env, check=True, capture_output=True
        )

    def start(self) -> None:
        self._script("start")
        from flows.storage import ObjectStore, StorageError

        # The S3 port answers before the filer behind it is ready: wait for a real answer.
        store = ObjectStore(self.endpoint, self.access_key, self.secret_key)
        wait_for(lambda: _answers(store, StorageError), timeout=60, every=0.2)

    def stop(self) -> None:
        self._script("stop")


def _answers(store, errors) -> bool:
    try:
        store.list_buckets()
    except errors:
        return False
    return True


@contextmanager
def spare_s3(tmp_path: Path, access_key: str, secret_key: str) -> Iterator[SpareS3]:
    server = SpareS3(tmp_path / "spare-seaweedfs", free_port_block(4), access_key, secret_key)
    server.start()
    try:
        yield server
    finally:
        server.stop()
