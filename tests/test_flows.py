"""The digitize flow on ephemeral Prefect with the real PostgreSQL and SeaweedFS.

The model is a real DocFormerv2 (a very small one) trained in the fixture until it has learnt
the fields of the few synthetic receipts the tests upload, so "the right values land in
`fields`" is checked exactly. Most tests seed the OCR cache with the receipts' ground-truth OCR
(what the cache is for: a document OCR'd once is never OCR'd again); one test runs PaddleOCR.

The helpers here are shared by the other flow-level test files (test_cli, test_sql_examples).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from docformer.generation import build_prompt, build_target
from docformer.synth import SynthDocument, render_document
from flows.demo import upload_documents
from flows.settings import Settings

torch.set_num_threads(1)

FIELDS = ["company", "date", "total"]
TRAIN_STEPS = 150


# --- shared helpers -------------------------------------------------------------------------


def synth_receipts(n: int = 4, seed: int = 7) -> list[SynthDocument]:
    return [render_document("receipt", seed=seed, index=i) for i in range(n)]


def build_tiny_model(folder: Path, documents: list[SynthDocument]) -> Path:
    """A DocFormerv2 small enough to train in seconds, trained until it has learnt the
    `FIELDS` of `documents` (from their ground-truth OCR), saved as a model folder."""
    from docformer.models.docformerv2 import (
        DocFormerV2Config,
        DocFormerV2ForConditionalGeneration,
        DocFormerV2Processor,
    )
    from docformer.tokenization import train_tokenizer

    if (folder / "model.safetensors").is_file():  # built by an earlier test module
        return folder
    prompt = build_prompt(FIELDS)
    targets = [build_target(d.fields, FIELDS) for d in documents]
    lines = [" ".join(w.text for w in line) for d in documents for line in d.ocr.lines()]
    texts = lines + [t.replace("<extra_id_99>", " ") for t in targets] + [prompt] * 3
    tokenizer = train_tokenizer(texts, vocab_size=400)
    config = DocFormerV2Config.from_preset(
        "tiny", vocab_size=len(tokenizer), d_model=64, d_kv=16, num_heads=4, d_ff=128,
        num_layers=2, num_decoder_layers=2, image_size=[64, 48], patch_size=16,
        max_text_tokens=512, dropout_rate=0.0,
    )  # fmt: skip
    processor = DocFormerV2Processor.from_config(config, tokenizer)
    torch.manual_seed(0)
    model = DocFormerV2ForConditionalGeneration(config)
    batch = processor([d.image for d in documents], [d.ocr for d in documents], prompt)
    batch.pop("word_ids")
    encoded = [tokenizer(t).input_ids for t in targets]
    labels = torch.full((len(encoded), max(map(len, encoded))), -100)
    for row, ids in enumerate(encoded):
        labels[row, : len(ids)] = torch.tensor(ids)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(TRAIN_STEPS):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "metrics.json").write_text(json.dumps({"fields": FIELDS, "model_name": "tiny"}))
    return folder


def prepare_services(settings: Settings) -> None:
    from flows import provision

    provision.prepare(settings, echo=lambda *_: None)


def seed_ocr_cache(settings: Settings, documents: list[SynthDocument]) -> None:
    """The receipts' exact OCR in the cache, as if an earlier run had OCR'd them."""
    from docformer.ocr.engine import engine_id as ocr_engine_id
    from flows.clients import object_store
    from flows.ocr_cache import ocr_cache_key

    store, engine_id = object_store(settings), ocr_engine_id()
    for document in documents:
        sha256 = hashlib.sha256(document.encode()).hexdigest()
        key = ocr_cache_key(engine_id, sha256, 0)
        store.put_json(settings.artifact_bucket, key, document.ocr.to_dict())


def current_values(database_url: str) -> dict[str, dict[str, str]]:
    """{source_key: {field: value}} from the current_fields view."""
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT source_key, name, value FROM current_fields"))
        values: dict[str, dict[str, str]] = {}
        for key, name, value in rows:
            values.setdefault(key, {})[name] = value
    engine.dispose()
    return values


def scalar(database_url: str, sql: str, **params):
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        value = conn.execute(sa.text(sql), params).scalar()
    engine.dispose()
    return value


@pytest.fixture(scope="module")
def receipts() -> list[SynthDocument]:
    return synth_receipts()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, receipts) -> Path:
    # The session's base temp dir: every test module of this run reuses one trained model.
    return build_tiny_model(tmp_path_factory.getbasetemp() / "tiny-docformerv2", receipts)


# --- tests -----------------------------------------------------------------------------------


def test_digitize_stores_fields_skips_unchanged_and_reprocesses(
    prefect_api, docflow_env, receipts, tiny_model
):
    from flows.digitize import digitize

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    keys = upload_documents(settings, receipts, prefix="scans/")
    seed_ocr_cache(settings, receipts)
    # A document that is not one: an HTML error page saved under a PDF name.
    from flows.clients import object_store

    object_store(settings).put_bytes(
        settings.inbox_bucket, "scans/broken.pdf", b"<html><body>session expired</body></html>"
    )

    first = digitize(model_version=str(tiny_model), chunk_size=2)

    assert first["documents"] == 5 and first["extracted"] == 4 and first["failed"] == 1
    assert first["pages"] == 4 and first["pages_cached"] == 4 and first["pages_ocred"] == 0
    assert [f["key"] for f in first["failures"]] == ["scans/broken.pdf"]
    assert "unsupported_format" in first["failures"][0]["reason"]
    # the right values, for every field of every receipt
    expected = {
        key: {f: d.fields[f] for f in FIELDS} for key, d in zip(keys, receipts, strict=True)
    }
    assert current_values(url) == expected
    assert {f["name"] for f in first["fields"]} == set(FIELDS)
    assert all(f["count"] == 4 and 0 < f["mean_confidence"] <= 1 for f in first["fields"])
    # the job row, linked to the flow run, with its counts
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        job = conn.execute(sa.text("SELECT * FROM jobs ORDER BY id")).mappings().one()
        assert job["status"] == "completed" and job["flow_run_id"] is not None
        assert (job["documents_seen"], job["documents_extracted"], job["documents_failed"]) == (
            5,
            4,
            1,
        )
        assert job["pages"] == 4 and job["finished_at"] >= job["started_at"]
        failed = conn.execute(
            sa.text(
                "SELECT status, last_error FROM documents WHERE source_key = 'scans/broken.pdf'"
            )
        ).one()
        assert failed.status == "failed" and "HTML" in failed.last_error
        pages = conn.execute(sa.text("SELECT count(*) FROM pages")).scalar()
        assert pages == 4
        version = conn.execute(sa.text("SELECT name, uri, status FROM model_versions")).one()
        assert version.uri == str(tiny_model.resolve()) and version.status == "candidate"

    # the summary artifact of the run
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["digitize-summary"]))
        )
    assert any("scans/broken.pdf" in a.data and "Failures (1)" in a.data for a in artifacts)

    # nothing new: nothing claimed, nothing read
    second = digitize(model_version=str(tiny_model))
    assert second["documents"] == 0 and second["discovery"]["unchanged"] == 5

    # reprocess: the extraction of each document is replaced, never duplicated
    fields_before = scalar(url, "SELECT count(*) FROM fields")
    third = digitize(model_version=str(tiny_model), reprocess=True)
    assert third["documents"] == 5 and third["extracted"] == 4 and third["failed"] == 1
    assert scalar(url, "SELECT count(*) FROM extractions") == 4
    assert scalar(url, "SELECT count(*) FROM fields") == fields_before
    assert scalar(url, "SELECT count(DISTINCT job_id) FROM extractions") == 1
    assert scalar(url, "SELECT max(job_id) FROM extractions") == third["job_id"]
    assert current_values(url) == expected
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT status, count(*) FROM jobs GROUP BY status"))
        assert dict(statuses.all()) == {"completed": 3}
    engine.dispose()


@pytest.mark.slow
def test_digitize_ocrs_once_and_caches_by_engine(prefect_api, docflow_env, tiny_model):
    """Real PaddleOCR on one small receipt named by `keys` (a triggered run): the result goes
    into the cache under the engine's id, and a second model's run reads it from there."""
    from docformer.ocr import get_engine
    from docformer.ocr.engine import engine_id as ocr_engine_id
    from flows.clients import object_store
    from flows.digitize import digitize
    from flows.ocr_cache import ocr_cache_key

    settings = docflow_env
    prepare_services(settings)
    receipt = render_document("receipt", seed=11, index=3)
    [key] = upload_documents(settings, [receipt])
    upload_documents(settings, [render_document("receipt", seed=11, index=4)])  # not named

    first = digitize(model_version=str(tiny_model), keys=[key])
    assert first["documents"] == 1 and first["pages_ocred"] == 1 and first["extracted"] == 1

    engine_id = get_engine().engine_id
    assert ocr_engine_id() == engine_id  # the cache key is computed without loading the engine
    sha256 = hashlib.sha256(receipt.encode()).hexdigest()
    cached = object_store(settings).get_json(
        settings.artifact_bucket, ocr_cache_key(engine_id, sha256, 0)
    )
    assert cached["engine"] == engine_id and len(cached["words"]) > 10

    again = digitize(model_version=str(tiny_model), keys=[key], reprocess=True)
    assert again["documents"] == 1 and again["pages_ocred"] == 0 and again["pages_cached"] == 1
    url = settings.database_url.get_secret_value()
    assert scalar(url, "SELECT count(*) FROM documents") == 1  # the other upload was not named


def test_transient_errors_are_retried_and_bad_input_is_not():
    from sqlalchemy.exc import OperationalError

    from docformer.io import UnsupportedFormat
    from flows.retries import is_transient
    from flows.storage import ObjectMissing, StorageUnavailable

    assert is_transient(StorageUnavailable("connection refused"))
    assert is_transient(OperationalError("SELECT 1", {}, Exception("server closed")))
    assert not is_transient(ObjectMissing("inbox", "a.pdf"))
    assert not is_transient(UnsupportedFormat("plain text", source="a.pdf"))
    assert not is_transient(ValueError("bad"))


def test_summary_markdown_lists_failures_and_fields():
    from flows.artifacts import digitize_markdown

    text = digitize_markdown(
        {
            "job_id": 7,
            "status": "completed",
            "documents": 3,
            "extracted": 2,
            "failed": 1,
            "pages": 5,
            "pages_per_minute": 12.5,
            "seconds": 24.0,
            "fields": [{"name": "total", "count": 2, "mean_confidence": 0.91}],
            "failures": [{"key": "a|b.pdf", "reason": "empty_document: the file is empty"}],
        }
    )
    assert "| 3 | 2 | 1 | 0 | 5 | 12.5 | 24.0 |" in text
    assert "| total | 2 | 0.91 |" in text
    assert "a\\|b.pdf" in text and "Failures (1)" in text


def register_active(settings: Settings, model_dir: Path) -> None:
    from db.model_versions import register_model_version
    from db.session import session_scope
    from flows.clients import sessions

    with session_scope(sessions(settings)) as session:
        register_model_version(session, "tiny-base", str(model_dir), status="active")


def test_finetune_registers_a_version_and_promotes_only_when_better(
    prefect_api, docflow_env, receipts, tiny_model, tmp_path, capsys
):
    from docformer.labelled import write_labelled_example
    from flows.cli import main
    from flows.digitize import digitize
    from flows.finetune import finetune

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    register_active(settings, tiny_model)
    folder = tmp_path / "labelled"
    for document in receipts:
        write_labelled_example(
            folder, document.name, document.encode(), document.fields, [document.ocr]
        )
    assert main(["labels", "import", str(folder)]) == 0

    # The base already reads these receipts perfectly: a new version cannot beat it by 0.01.
    kept = finetune(fields=FIELDS, max_steps=4, batch_size=4, promote_margin=0.01)
    assert not kept["promoted"] and kept["active_f1"] == 1.0
    assert kept["train_size"] + kept["holdout_size"] == len(receipts) and kept["holdout_size"] >= 1
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        run = conn.execute(sa.text("SELECT * FROM training_runs")).mappings().one()
        assert run["status"] == "completed" and run["kind"] == "finetune"
        assert (run["train_size"], run["holdout_size"]) == (
            kept["train_size"],
            kept["holdout_size"],
        )
        assert run["loss_curve"] and "loss" in run["loss_curve"][0]
        assert run["metrics"]["new_f1"] == kept["new_f1"] and not run["metrics"]["promoted"]
        versions = conn.execute(
            sa.text("SELECT name, status, uri, parent_id FROM model_versions ORDER BY id")
        ).all()
        assert [v.status for v in versions] == ["active", "candidate"]
        assert versions[1].uri.startswith(f"s3://{settings.artifact_bucket}/models/")
        assert versions[1].parent_id is not None

    # With a margin any version beats (and a holdout of one document allowed), it is promoted,
    # and digitize then extracts with it, loading its weights from the artifact bucket.
    promoted = finetune(
        fields=FIELDS, max_steps=2, batch_size=4, promote_margin=-1.0, min_holdout=1
    )
    assert promoted["promoted"]
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT status FROM model_versions ORDER BY id"))
        assert statuses.scalars().all() == ["retired", "candidate", "active"]
    seed_ocr_cache(settings, receipts)
    summary = digitize()
    assert summary["extracted"] == len(receipts)
    with engine.connect() as conn:
        used = conn.execute(sa.text("SELECT DISTINCT model_version FROM current_fields")).all()
    engine.dispose()
    assert used == [(promoted["version"],)]


def test_pretrain_registers_a_candidate_from_the_backlog(
    prefect_api, docflow_env, receipts, tiny_model
):
    from flows.digitize import digitize
    from flows.pretrain import pretrain

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    register_active(settings, tiny_model)
    upload_documents(settings, receipts)
    seed_ocr_cache(settings, receipts)
    assert digitize()["extracted"] == len(receipts)

    result = pretrain(steps=3, batch_size=2, max_pages=3)
    assert result["pages"] == 3 and result["steps"] == 3 and result["base_version"] == "tiny-base"
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        run = conn.execute(sa.text("SELECT * FROM training_runs")).mappings().one()
        version = (
            conn.execute(
                sa.text("SELECT * FROM model_versions WHERE name = :n"), {"n": result["version"]}
            )
            .mappings()
            .one()
        )
    engine.dispose()
    assert run["kind"] == "pretrain" and run["status"] == "completed" and run["train_size"] == 3
    assert run["loss_curve"] and run["result_version_id"] == version["id"]
    assert version["status"] == "candidate" and version["uri"].startswith("s3://")


def test_digitize_refuses_to_run_without_the_extraction_limit(prefect_api, docflow_env):
    from prefect.client.orchestration import get_client

    from flows.deployments import ensure_concurrency_limits
    from flows.digitize import digitize
    from flows.tasks import EXTRACT_LIMIT

    prepare_services(docflow_env)
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(EXTRACT_LIMIT)
    try:
        with pytest.raises(RuntimeError, match="docflow deploy"):
            digitize()
    finally:
        ensure_concurrency_limits()
    url = docflow_env.database_url.get_secret_value()
    assert scalar(url, "SELECT status FROM jobs") == "failed"
    assert "does not exist" in scalar(url, "SELECT error FROM jobs")
