"""Every query in docs/SQL.md runs against a database filled by a real digitize run."""

from __future__ import annotations

import re

import sqlalchemy as sa
import test_flows
from conftest import ROOT
from test_flows import prepare_services, seed_ocr_cache

from flows.demo import upload_documents
from flows.page_text import page_text

# The flow-test fixtures, shared: one Prefect API per module, one trained model per session.
receipts = test_flows.receipts
tiny_model = test_flows.tiny_model

SQL_DOC = ROOT / "docs" / "SQL.md"


def sql_examples() -> list[tuple[str, str]]:
    """(heading, query) for every ```sql block of docs/SQL.md, in order."""
    examples, heading = [], None
    for block in re.split(r"^(## .*)$", SQL_DOC.read_text(), flags=re.M):
        if block.startswith("## "):
            heading = block[3:].strip()
        for query in re.findall(r"```sql\n(.*?)```", block, flags=re.S):
            examples.append((heading, query.strip()))
    return examples


def test_the_demo_prints_the_first_example():
    from flows.demo import EXAMPLE_QUERY

    assert sql_examples()[0][1] == EXAMPLE_QUERY.strip()
    assert len(sql_examples()) >= 8


def test_every_example_runs_on_a_digitized_database(prefect_api, docflow_env, receipts, tiny_model):
    from db.labels import store_labels
    from db.session import session_scope
    from flows.clients import object_store, sessions
    from flows.digitize import digitize

    settings = docflow_env
    prepare_services(settings)
    keys = upload_documents(settings, receipts)
    seed_ocr_cache(settings, receipts)
    object_store(settings).put_bytes(settings.inbox_bucket, "empty.png", b"")
    summary = digitize(model_version=str(tiny_model))
    assert summary["extracted"] == len(receipts) and summary["failed"] == 1
    with session_scope(sessions(settings)) as session:  # a label for the last example
        document_id = session.execute(
            sa.text("SELECT document_id FROM document_sources WHERE key = :key"), {"key": keys[0]}
        ).scalar_one()
        store_labels(session, document_id, {"total": receipts[0].fields["total"]}, "test")

    engine = sa.create_engine(settings.database_url.get_secret_value())
    results = {}
    with engine.connect() as conn:
        for heading, query in sql_examples():
            results[heading] = conn.execute(sa.text(query)).all()
    engine.dispose()

    totals = results["Totals by company, largest first"]
    assert len(totals) == len(receipts)
    assert {row.company for row in totals} == {r.fields["company"] for r in receipts}
    assert results["Documents that failed, and why"][0].source_key == "empty.png"
    assert len(results["One row per document, fields as columns"]) == len(receipts)
    assert results["Extracted values against labels"][0].exact_match == 1

    # Full-text search: what each query should find, read from the receipts' own OCR.
    ocr_of = {key: r.ocr for key, r in zip(keys, receipts, strict=True)}
    words = {key: set(re.findall(r"\w+", ocr.text.lower())) for key, ocr in ocr_of.items()}
    text = {key: " ".join(ocr.text.lower().split()) for key, ocr in ocr_of.items()}
    pages = results["Pages that mention a word, best match first"]
    assert {row.source_key for row in pages} == {k for k in keys if "total" in words[k]}
    assert all("«" in row.snippet and row.page_index == 0 for row in pages)
    phrases = {k for k in keys if "grand total" in text[k] or "nett total" in text[k]}
    assert phrases and {row.source_key for row in results["Either of two phrases"]} == phrases
    without = {k for k in keys if "total" in words[k] and "cash" not in words[k]}
    assert without and {row.source_key for row in results["A word, but not another"]} == without
    cafes = {k for k, ocr in ocr_of.items() if "cafe" in page_text(ocr)[1].lower()}
    headings = results["Documents whose heading says a word"]
    assert cafes and {row.source_key for row in headings} == cafes
    per_document = results["Search, one row per document"]
    assert [row.rank for row in per_document] == sorted(
        (r.rank for r in per_document), reverse=True
    )
    assert {row.source_key for row in per_document} == {row.source_key for row in pages}
    # The archive: every document that says the word has its searchable PDF recorded.
    archived = results["Searchable PDFs of the documents that say a word"]
    assert {row.source_key for row in archived} == {row.source_key for row in pages}
    assert all(row.searchable_pdf.endswith(".searchable.pdf") for row in archived)
