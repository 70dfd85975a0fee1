"""The `docflow` commands against the real services, on a throwaway Prefect API."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
import test_flows
from test_flows import seed_ocr_cache

from docformer.synth import generate
from flows.cli import build_parser, main

receipts = test_flows.receipts
tiny_model = test_flows.tiny_model


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_every_command_parses():
    parser = build_parser()
    for argv in (
        ["upload", "a.pdf", "b.png", "--prefix", "x/"],
        ["run", "--prefix", "scans/", "--wait"],
        ["jobs"],
        ["fields", "scans/a.pdf"],
        ["labels", "import", "folder"],
        ["export", "--format", "parquet", "--since", "2024-01-01", "--out", "f.parquet"],
        ["search", '"grand total" -cash', "--limit", "5"],
        ["models"],
        ["deploy"],
        ["demo", "--count", "3"],
    ):
        parser.parse_args(argv)


def test_upload_run_inspect_export_and_import_labels(
    prefect_api, docflow_env, receipts, tiny_model, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "250")  # rich tables: room for every column
    settings = docflow_env
    assert run_cli(capsys, "init")[0] == 0
    files = []
    for document in receipts:
        path = tmp_path / f"{document.name}{document.suffix}"
        path.write_bytes(document.encode())
        files.append(str(path))
    seed_ocr_cache(settings, receipts)

    code, out = run_cli(capsys, "upload", *files, "--prefix", "cli/")
    assert code == 0 and f"s3://{settings.inbox_bucket}/cli/{receipts[0].name}" in out
    assert "event docflow.document.uploaded" in out

    code, out = run_cli(capsys, "run", "--local", "--prefix", "cli/", "--model", str(tiny_model))
    assert code == 0 and "digitize job 1: completed" in out

    code, out = run_cli(capsys, "jobs")
    assert code == 0 and "completed" in out

    key = f"cli/{receipts[0].name}{receipts[0].suffix}"
    code, out = run_cli(capsys, "fields", key)
    assert code == 0 and receipts[0].fields["total"] in out
    assert run_cli(capsys, "fields", "no/such/key.pdf")[0] == 1

    # The run stored every page's OCR text: a receipt is found by the name printed on it.
    code, out = run_cli(capsys, "search", f'"{receipts[0].fields["company"]}"')
    assert code == 0 and key in out

    code, out = run_cli(capsys, "export", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(receipts) * len(test_flows.FIELDS)
    assert {r["name"] for r in rows} == set(test_flows.FIELDS)
    code, out = run_cli(capsys, "export", "--format", "jsonl", "--since", "2000-01-01")
    assert len([json.loads(line) for line in out.splitlines()]) == len(rows)
    assert run_cli(capsys, "export", "--format", "jsonl", "--since", "2999-01-01")[1] == ""
    parquet = tmp_path / "fields.parquet"
    assert run_cli(capsys, "export", "--format", "parquet", "--out", str(parquet))[0] == 0
    assert pq.read_table(parquet).num_rows == len(rows)

    code, out = run_cli(capsys, "models")
    assert code == 0 and "tiny-docformerv2" in out and "candidate" in out

    folder = tmp_path / "labelled"
    generate("invoice", n=2, seed=5, out_dir=folder)
    code, out = run_cli(capsys, "labels", "import", str(folder))
    assert code == 0 and "2 documents" in out
    from sqlalchemy import create_engine, text

    engine = create_engine(settings.database_url.get_secret_value())
    with engine.connect() as conn:
        labelled = conn.execute(text("SELECT count(DISTINCT document_id) FROM labels")).scalar()
        sources = conn.execute(text("SELECT DISTINCT source FROM labels")).scalars().all()
    engine.dispose()
    assert labelled == 2 and sources == ["import"]


@pytest.mark.slow
def test_demo_digitizes_sample_scans_and_is_safe_to_run_twice(
    prefect_api, docflow_env, tiny_model, capsys, monkeypatch
):
    """What `make run` does after `docflow up`, on two sample scans (real OCR)."""
    from test_flows import prepare_services, register_active

    monkeypatch.setenv("COLUMNS", "250")
    prepare_services(docflow_env)
    register_active(docflow_env, tiny_model)

    code, out = run_cli(capsys, "demo", "--count", "2")
    assert code == 0 and "digitize job 1: completed" in out
    assert "SELECT company.value AS company" in out and "company" in out
    assert ": 2 written, 0 already there" in out  # the two documents' PDF, ALTO and hOCR
    assert (
        'docflow search "total"' in out and "searchable PDF of" in out and ".searchable.pdf" in out
    )
    code, out = run_cli(capsys, "demo", "--count", "2")
    assert code == 0 and "digitize job 2: completed" in out
    url = docflow_env.database_url.get_secret_value()
    seen = test_flows.scalar(url, "SELECT documents_seen FROM jobs WHERE id = 2")
    assert seen == 0  # the second run found nothing new
    assert test_flows.scalar(url, "SELECT count(*) FROM extractions") == 2
