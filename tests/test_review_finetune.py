"""The review loop closes, on real PostgreSQL, SeaweedFS and a throwaway Prefect API: a digitize
run that leaves fields for review says so with a `docflow.review.needed` event, and the
fine-tuning flow learns from review labels, holding out only documents whose labels cover
every field it trains on.

The model is the random-weight DocFormerv2 of `helpers_flows` and the fine-tune the smallest
the flow allows (one step): these tests are about which labels and documents are used and
what is recorded, not about what the model learns.
"""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import yaml
from helpers_flows import FIELDS, build_random_model, numbered_page, put_with_ocr, query
from sqlalchemy.orm import Session
from test_flows import prepare_services, register_active

from db import migrate
from db.review import QueueFilter, add_reviewer, claim_document, set_threshold
from db.review_decisions import decide
from db.review_items import job_review_counts
from db.session import make_engine
from docformer.training.data import split_examples, split_examples_covering
from tests.helpers_review import seed_documents, seed_model

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    return build_random_model(tmp_path_factory.getbasetemp() / "random-docformerv2")


@pytest.fixture(scope="module")
def random_tagger(tmp_path_factory, random_model) -> Path:
    """The random model's encoder under a random tagging head for `FIELDS`: unlike the random
    generator, it tags some words of every page, so digitize stores fields (unsure ones)."""
    import torch

    from docformer.models.docformerv2 import DocFormerV2Processor
    from docformer.training.tagging import tagging_model

    folder = tmp_path_factory.getbasetemp() / "random-tagger"
    if not (folder / "model.safetensors").is_file():
        torch.manual_seed(0)
        tagging_model(random_model, FIELDS).save_pretrained(folder)
        DocFormerV2Processor.from_pretrained(random_model).save_pretrained(folder)
    return folder


def example(name: str, **fields: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, fields=fields)


def held_out(name: str, fraction: float = 0.2, seed: int = 0) -> bool:
    """Whether the hash alone sends a document named `name` to the holdout."""
    return bool(split_examples([example(name)], fraction, seed)[1])


# --- the holdout rule, without training ----------------------------------------------------------


def test_documents_whose_labels_miss_a_trained_field_never_land_in_the_holdout():
    """Of 400 documents, every fourth labelled only with `total`, one with `date` labelled as
    not on it (''), which covers the field. Trained on company, date and total: no incomplete
    document is held out; those the hash holds out are left out of both sides (training on them
    would hold out a document a model learnt from once its labels are completed); everything
    else falls exactly as the plain hash split puts it."""
    fields = ["company", "date", "total"]
    examples = [
        example(f"doc-{i}", total=f"{i}.00")
        if i % 4 == 0
        else example(f"doc-{i}", company="ACME", date="" if i == 1 else "2024-01-02", total="1")
        for i in range(400)
    ]
    train, holdout, left_out = split_examples_covering(examples, 0.2, 0, fields)

    complete = {e.name for e in examples if set(fields) <= set(e.fields)}
    assert "doc-1" in complete  # an empty value is a label: "not on this document"
    assert {e.name for e in holdout} <= complete
    assert holdout and all(held_out(e.name) for e in holdout)
    assert {e.name for e in left_out} == {
        e.name for e in examples if e.name not in complete and held_out(e.name)
    }
    assert left_out and not {e.name for e in left_out} & {e.name for e in train}
    assert [e.name for e in train] == [e.name for e in examples if not held_out(e.name)]
    # With every document labelled on every field, it is the plain hash split.
    assert split_examples_covering(examples, 0.2, 0, ["total"])[:2] == split_examples(
        examples, 0.2, 0
    )
    assert split_examples_covering(examples, 0.2, 0, ["total"])[2] == []


def test_a_forced_holdout_document_is_always_a_complete_one():
    """Two documents whose hashes both say "train": the plain split moves the one nearest the
    boundary to the holdout so that neither side is empty; here only a complete one may move."""
    names = [name for name in (f"n{i}" for i in range(200)) if not held_out(name)][:3]
    [nearest] = split_examples([example(name) for name in names], 0.2, 0)[1]
    complete = example(next(name for name in names if name != nearest.name), total="1")
    incomplete = [example(name) for name in names if name != complete.name]
    train, holdout, left_out = split_examples_covering([*incomplete, complete], 0.2, 0, ["total"])
    assert holdout == [complete] and train == incomplete and left_out == []
    # Nothing complete to move: the holdout stays empty (the flow refuses such a run).
    assert split_examples_covering(incomplete, 0.2, 0, ["total"]) == (incomplete, [], [])


def test_values_accepted_by_default_do_not_qualify_a_document_for_the_holdout():
    """A reviewed document's confident fields count as labels for training (accepted by
    default) but not for the holdout, which scores only what a person labelled."""
    from flows.tasks_training import ACCEPTED_BY_DEFAULT, SourcedExample, labelled_names

    fields = ["company", "total"]
    reviewed = [
        SourcedExample(
            f"doc-{i}",
            [],
            {"company": "ACME", "total": "1.00"},
            {"company": ACCEPTED_BY_DEFAULT, "total": "review"},
        )
        for i in range(200)
    ]
    assert labelled_names(reviewed[0]) == {"total"}
    train, holdout, left_out = split_examples_covering(
        reviewed, 0.2, 0, fields, labelled=labelled_names
    )
    assert holdout == [] and left_out and len(train) + len(left_out) == len(reviewed)
    assert split_examples_covering(reviewed, 0.2, 0, fields)[1]  # counted as labels, it would


def test_a_reviewed_documents_other_fields_are_accepted_or_still_waiting(session: Session):
    """Of a document reviewed on one field: the fields confident enough to skip review stand
    as the model read them, the unsure ones wait; deciding them empties the wait."""
    from db.review import claim_next
    from db.review_decisions import decide
    from db.review_items import unreviewed_fields

    model = seed_model(session)
    fields = [
        {"name": "company", "value": "ACME", "confidence": 0.995},
        {"name": "date", "value": "2024-01-02", "confidence": 0.5},
        {"name": "total", "value": "9.00", "confidence": 0.2},
    ]
    (doc,) = seed_documents(session, model, [fields])
    alice = add_reviewer(session, "alice", "hash")
    session.commit()
    item = claim_next(session, alice, QueueFilter(field="total"), audit_rate=0.0)
    decide(session, alice, item.token, "correct", value="19.00")
    rest = unreviewed_fields(session, [doc.document_id])[doc.document_id]
    assert rest.accepted == {"company": "ACME"} and rest.waiting == {"date"}
    item = claim_next(session, alice, audit_rate=0.0)
    decide(session, alice, item.token, "accept")
    rest = unreviewed_fields(session, [doc.document_id])[doc.document_id]
    assert rest.accepted == {"company": "ACME"} and rest.waiting == frozenset()


def test_the_fields_a_document_must_cover_are_those_the_trainer_trains(random_model, random_tagger):
    """The run's `fields`; else a tagging base's own fields; else those the labels give a value
    (a field labelled only as absent is not trained, so it is not required)."""
    from flows.promotion import fields_to_train

    examples = [example("a", total="1", date=""), example("b", company="ACME", date="")]
    assert fields_to_train(random_model, ["total"], examples) == ["total"]
    assert fields_to_train(random_tagger, None, examples) == FIELDS
    assert fields_to_train(random_model, None, examples) == ["company", "total"]


# --- the count behind the event, on seeded data ------------------------------------------------


@pytest.fixture
def session(empty_database_url: str):
    migrate.upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    with Session(engine) as session:
        yield session
    engine.dispose()


def fields_with(total: float, company: float) -> list[dict]:
    return [
        {"name": "company", "value": "ACME", "confidence": company},
        {"name": "total", "value": "9.00", "value_num": Decimal("9.00"), "confidence": total},
    ]


def test_job_review_counts_are_the_queues_low_confidence_items_of_that_job(session: Session):
    """The threshold is 0.9 (the active model's reliability table), 0.5 for company by hand. A
    job's count holds its documents' fields below their threshold, once per (document, name),
    never an item already decided, nor a document a later job extracted again."""
    model = seed_model(session)
    set_threshold(session, "company", 0.5, "test")
    docs = seed_documents(
        session,
        model,
        [
            fields_with(total=0.42, company=0.4),  # both below
            fields_with(total=0.42, company=0.7),  # total below; company above its own 0.5
            fields_with(total=0.95, company=0.99),  # none
            fields_with(total=0.10, company=0.99),  # total: decided below
            fields_with(total=0.20, company=0.99),  # extracted again by the next job
        ],
    )
    [job] = session.execute(sa.text("SELECT DISTINCT job_id FROM extractions")).scalars()
    alice = add_reviewer(session, "alice", "hash")
    session.commit()
    items, _ = claim_document(session, alice, docs[3].document_id)
    total = next(i for i in items if i.name == "total")
    decide(session, alice, total.token, "correct", value="10.00")
    again = [fields_with(total=0.3, company=0.3)]  # the same content: the same document
    same = f"document 4 {job}".encode()  # what seed_documents wrote
    seed_documents(session, model, again, keys=[docs[4].key], contents=[same])

    counts = job_review_counts(session, job)
    assert counts.by_field == {"company": 1, "total": 2}
    assert (counts.total, counts.documents) == (3, 2)
    [later] = session.execute(sa.text("SELECT max(job_id) FROM extractions")).scalars()
    assert job_review_counts(session, later).by_field == {"company": 1, "total": 1}
    assert job_review_counts(session, later + 1).total == 0


# --- the event of a digitize run ----------------------------------------------------------------


def review_events(job_id: int, timeout: float = 30.0) -> list:
    """The `docflow.review.needed` events about job `job_id`, once the server has stored one."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    wanted = EventFilter(
        event=EventNameFilter(name=["docflow.review.needed"]),
        resource=EventResourceFilter(id=[f"docflow.job.{job_id}"]),
    )
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            events = client.read_events(wanted, limit=50).events
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def test_a_digitize_run_that_leaves_fields_for_review_emits_an_event_with_its_counts(
    prefect_api, docflow_env, random_tagger
):
    """Every field below 1.0 goes to review here: the run's event counts every (document,
    field) it found, by field, and names the job and its flow run. Counted again once the
    thresholds send nothing to review, nothing is emitted."""
    from flows.clients import sessions
    from flows.digitize import announce_review, digitize

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    with sessions(settings)() as session:
        for name in FIELDS:
            set_threshold(session, name, 1.0, "test")
        session.commit()
    for number in (3, 4, 5):
        put_with_ocr(settings, f"scans/page-{number}.png", *_page(number))

    summary = digitize(model_version=str(random_tagger))
    assert summary["extracted"] == 3
    job_id = summary["job_id"]
    found = query(
        url,
        "SELECT f.name, count(DISTINCT e.document_id) AS n FROM fields f"
        " JOIN extractions e ON e.id = f.extraction_id WHERE e.job_id = :j GROUP BY f.name",
        j=job_id,
    )
    by_field = {row.name: row.n for row in found}
    assert sum(by_field.values()) > 0, "the random tagger found no field at all"
    [(documents,)] = query(
        url,
        "SELECT count(DISTINCT document_id) FROM extractions e WHERE e.job_id = :j"
        " AND EXISTS (SELECT 1 FROM fields f WHERE f.extraction_id = e.id)",
        j=job_id,
    )
    expected = {
        "job_id": job_id,
        "fields_to_review": sum(by_field.values()),
        "by_field": dict(sorted(by_field.items())),
        "documents": documents,
    }
    assert summary["review"] == expected

    [event] = review_events(job_id)
    assert event.event == "docflow.review.needed" and event.payload == expected
    assert event.resource["prefect.resource.name"] == f"digitize job {job_id}"
    [(flow_run_id,)] = query(url, "SELECT flow_run_id FROM jobs WHERE id = :j", j=job_id)
    assert f"prefect.flow-run.{flow_run_id}" in [r.id for r in event.related]

    with sessions(settings)() as session:
        for name in FIELDS:
            set_threshold(session, name, 0.0, "test")
        session.commit()
    nothing = {"job_id": job_id, "fields_to_review": 0, "by_field": {}, "documents": 0}
    assert announce_review(job_id) == nothing  # and with nothing to review, no event


def _page(number: int):
    data, ocr = numbered_page(number)
    return data, [ocr]


def test_the_readme_automation_is_one_prefect_accepts_and_matches_the_event():
    """The README's automation for `docflow.review.needed` parses as Prefect's own schema, with
    a send-notification action whose text reads the event's payload fields."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger

    text = README.read_text(encoding="utf-8")
    block = text.split("```yaml\n# review-needed.yaml")[1].split("```")[0]
    automation = AutomationCore.model_validate(yaml.safe_load(block))
    assert isinstance(automation.trigger, EventTrigger)
    assert automation.trigger.expect == {"docflow.review.needed"}
    [action] = automation.actions
    assert isinstance(action, SendNotification)
    for name in ("job_id", "fields_to_review", "by_field", "documents"):
        assert f"event.payload.{name}" in action.subject + action.body


# --- the fine-tuning flow on review labels ------------------------------------------------------


def pick_pages(count_by_side: dict[bool, int]) -> dict[bool, list[int]]:
    """Page numbers whose documents the hash sends to the holdout (True) or to training."""
    picked: dict[bool, list[int]] = {True: [], False: []}
    for number in range(1, 1000):
        data, _ = numbered_page(number)
        side = held_out(hashlib.sha256(data).hexdigest())
        if len(picked[side]) < count_by_side[side]:
            picked[side].append(number)
        if all(len(picked[s]) == n for s, n in count_by_side.items()):
            return picked
    raise AssertionError("not enough pages")


def test_the_finetune_flow_given_only_review_labels_trains_and_records_them(
    prefect_api, docflow_env, random_model
):
    """Eight documents labelled only by a reviewer. Five are reviewed on every field trained
    (company, date and total; a date not on the document is labelled '', which covers it), three
    only on `total`. Of the three the hash holds out two: they are left out of the run, not
    trained on; the third trains. The run's training_runs row records the review labels it
    used, by source, and the two left out."""
    from db.documents import DocumentObject, register_documents
    from db.labels import store_labels
    from flows.clients import sessions
    from flows.finetune import finetune

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    register_active(settings, random_model)
    pages = pick_pages({True: 3, False: 5})
    incomplete = set(pages[True][:2] + pages[False][:1])
    with sessions(settings)() as session:
        reviewer = add_reviewer(session, "alice", "argon2-hash")
        for number in pages[True] + pages[False]:
            data, ocr = _page(number)
            key = f"scans/page-{number}.png"
            put_with_ocr(settings, key, data, ocr)
            sha = hashlib.sha256(data).hexdigest()
            [document] = register_documents(
                session, [DocumentObject(settings.inbox_bucket, key, sha, len(data), "image/png")]
            )
            labels = {"total": f"{number}.00"}
            if number not in incomplete:
                labels |= {"company": f"RECEIPT {number}", "date": ""}
            store_labels(session, document.id, labels, "review", reviewer_id=reviewer)
        session.commit()

    result = finetune(fields=FIELDS, max_steps=1, batch_size=4)

    assert (result["train_size"], result["holdout_size"]) == (5, 1)
    [run] = query(url, "SELECT * FROM training_runs WHERE id = :id", id=result["training_run_id"])
    assert run.status == "completed" and run.result_version_id is not None
    assert (run.train_size, run.holdout_size) == (5, 1)
    metrics = run.metrics
    # Used: 5 complete documents, 3 labels each (4 train, 1 holdout), and 1 total-only one.
    assert metrics["label_sources"] == {"review": 5 * 3 + 1}
    assert metrics["left_out_of_holdout"] == 2
    assert metrics["fields_trained"] == FIELDS
    assert metrics["labels"] == {
        "train": {"company": 4, "date": 4, "total": 5},
        "holdout": {"company": 1, "date": 1, "total": 1},
    }
