"""The review dashboard's numbers against a real PostgreSQL (the backlog, reliability by
confidence bucket, the pace of decisions, the labels a next fine-tuning run would add) and the
reliability chart's SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from db.jobs import open_job
from db.labels import store_labels
from db.model_versions import register_model_version
from db.review import add_reviewer, claim_document, claim_next
from db.review_decisions import decide
from db.review_stats import (
    BacklogRow,
    ReliabilityRow,
    SourceCount,
    audit_reliability,
    decisions_by_reviewer,
    decisions_per_hour,
    labels_for_next_finetune,
    review_backlog,
)
from db.training_runs import finish_training_run, start_training_run
from flows.review.charts import reliability_svg
from tests.helpers_review import seed_documents, seed_model

SVG = "{http://www.w3.org/2000/svg}"


def receipt(total_confidence: float, company_confidence: float) -> list[dict]:
    return [
        {"name": "company", "value": "ACME SDN BHD", "confidence": company_confidence},
        {
            "name": "total",
            "value": "9.00",
            "value_num": Decimal("9.00"),
            "confidence": total_confidence,
        },
    ]


def review_all(session: Session, reviewer: int, decisions: dict[tuple[int, str], str]) -> None:
    """Claim everything in the queue (audit sample of all confident fields) and decide each
    item as `decisions` says."""
    while (item := claim_next(session, reviewer, audit_rate=1.0)) is not None:
        decision = decisions[(item.document_id, item.name)]
        value = "10.00" if decision == "correct" else None
        decide(session, reviewer, item.token, decision, value=value)


def test_the_backlog_counts_unsure_and_audit_items_still_waiting(session: Session, engine):
    model = seed_model(session)
    docs = seed_documents(session, model, [receipt(0.42, 0.995), receipt(0.8, 0.995)])
    seed_documents(session, model, [receipt(0.97, 0.999)])
    other = register_model_version(session, "receipts-v2", "s3://models/receipts-v2")
    seed_documents(session, other, [receipt(0.3, 0.1)])
    alice = add_reviewer(session, "alice", "hash")
    bob = add_reviewer(session, "bob", "hash")
    session.commit()

    assert review_backlog(session, audit_rate=0.0) == [
        BacklogRow("company", "receipts-v2", 1, 0, 1),
        BacklogRow("total", "receipts-v1", 2, 0, 2),
        BacklogRow("total", "receipts-v2", 1, 0, 1),
    ]
    assert review_backlog(session, audit_rate=1.0) == [
        BacklogRow("company", "receipts-v1", 0, 3, 3),
        BacklogRow("company", "receipts-v2", 1, 0, 1),
        BacklogRow("total", "receipts-v1", 2, 1, 3),
        BacklogRow("total", "receipts-v2", 1, 0, 1),
    ]

    # a leased item still waits, and so does a skipped one; a decided one does not
    with Session(engine) as other_session:
        held = claim_next(session, alice, audit_rate=0.0)
        taken = claim_next(other_session, bob, audit_rate=0.0)
        assert held.document_id == docs[0].document_id and held.name == "total"
        assert taken.document_id == docs[1].document_id and taken.name == "total"
        assert review_backlog(session, audit_rate=0.0)[1] == BacklogRow(
            "total", "receipts-v1", 2, 0, 2
        )
        decide(session, alice, held.token, "skip")
        decide(other_session, bob, taken.token, "accept")
    assert review_backlog(session, audit_rate=0.0) == [
        BacklogRow("company", "receipts-v2", 1, 0, 1),
        BacklogRow("total", "receipts-v1", 1, 0, 1),
        BacklogRow("total", "receipts-v2", 1, 0, 1),
    ]


def seed_reviewed(session: Session) -> tuple[list[int], int, int]:
    """Five receipts, every field reviewed by alice or bob; returns (document ids, alice, bob)."""
    model = seed_model(session)
    docs = seed_documents(
        session,
        model,
        [
            receipt(0.42, 0.995),
            receipt(0.45, 0.93),
            receipt(0.85, 0.999),
            receipt(0.97, 0.96),
            receipt(1.0, 0.2),
        ],
    )
    alice = add_reviewer(session, "alice", "hash")
    bob = add_reviewer(session, "bob", "hash")
    session.commit()
    d = [doc.document_id for doc in docs]
    review_all(
        session,
        alice,
        {
            (d[0], "total"): "accept",
            (d[1], "total"): "correct",
            (d[2], "total"): "absent",
            (d[3], "total"): "accept",
            (d[4], "total"): "accept",
            (d[0], "company"): "accept",
            (d[1], "company"): "skip",
            (d[2], "company"): "accept",
            (d[3], "company"): "correct",
            (d[4], "company"): "absent",
        },
    )
    review_all(session, bob, {(d[1], "company"): "accept"})  # the one alice skipped
    return d, alice, bob


def row(name: str, low: float, high: float, count: int, accepted: int) -> ReliabilityRow:
    return ReliabilityRow(name, "receipts-v1", low, high, count, accepted, accepted / count)


def test_reliability_counts_each_answers_latest_decision_per_bucket(session: Session):
    d, alice, _ = seed_reviewed(session)
    assert audit_reliability(session) == [
        row("company", 0.0, 0.5, 1, 0),
        row("company", 0.9, 0.95, 1, 1),
        row("company", 0.95, 0.99, 1, 0),
        row("company", 0.99, 1.0, 2, 2),
        row("total", 0.0, 0.5, 2, 1),
        row("total", 0.8, 0.9, 1, 0),
        row("total", 0.95, 0.99, 1, 1),
        row("total", 0.99, 1.0, 1, 1),  # a confidence of exactly 1 is in the last bucket
    ]
    # only confident answers (at or above the 0.9 threshold when decided)
    assert audit_reliability(session, audit_only=True) == [
        row("company", 0.9, 0.95, 1, 1),
        row("company", 0.95, 0.99, 1, 0),
        row("company", 0.99, 1.0, 2, 2),
        row("total", 0.95, 0.99, 1, 1),
        row("total", 0.99, 1.0, 1, 1),
    ]
    assert audit_reliability(session, edges=(0.0, 0.9, 1.0)) == [
        row("company", 0.0, 0.9, 1, 0),
        row("company", 0.9, 1.0, 4, 3),
        row("total", 0.0, 0.9, 3, 1),
        row("total", 0.9, 1.0, 2, 2),
    ]

    # a second look at the same answer replaces the first decision instead of adding one
    items, _ = claim_document(session, alice, d[3])
    total = next(item for item in items if item.name == "total")
    decide(session, alice, total.token, "correct", value="12.00")
    assert row("total", 0.95, 0.99, 1, 0) in audit_reliability(session)
    assert sum(r.count for r in audit_reliability(session) if r.name == "total") == 5

    with pytest.raises(ValueError):
        audit_reliability(session, edges=(0.5, 0.5, 1.0))


def test_decisions_per_hour_and_per_reviewer_leave_out_skips(session: Session):
    assert sum(h.decisions for h in decisions_per_hour(session)) == 0
    seed_reviewed(session)
    hours = decisions_per_hour(session)
    assert len(hours) == 24
    assert [h.hour for h in hours] == sorted(h.hour for h in hours)
    assert sum(h.decisions for h in hours) == 10  # 11 decisions, one of them a skip
    by_reviewer = decisions_by_reviewer(session)
    counts = [
        (r.reviewer, r.decisions, r.accepted, r.corrected, r.absent, r.skipped) for r in by_reviewer
    ]
    assert counts == [("alice", 9, 5, 2, 2, 1), ("bob", 1, 1, 0, 0, 0)]
    with pytest.raises(ValueError):
        decisions_per_hour(session, hours=0)


def test_labels_for_the_next_finetune_count_what_came_after_the_last_completed_run(
    session: Session,
):
    empty = labels_for_next_finetune(session)
    assert (empty.last_run_id, empty.since, empty.labels, empty.documents) == (None, None, 0, 0)

    model = seed_model(session)
    docs = seed_documents(session, model, [receipt(0.42, 0.995), receipt(0.8, 0.3)])
    d = [doc.document_id for doc in docs]
    store_labels(session, d[0], {"company": "ACME", "total": "9.00"}, "import")
    store_labels(session, d[1], {"company": "ACME"}, "import")
    session.execute(sa.text("UPDATE labels SET created_at = now() - interval '2 hours'"))
    session.commit()
    before = labels_for_next_finetune(session)
    assert before.last_run_id is None and (before.labels, before.documents) == (3, 2)
    assert before.by_source == (SourceCount("import", 3, 2),)

    # a completed fine-tuning run whose job started an hour ago read those three labels
    job = open_job(session, "finetune")
    run = start_training_run(session, "finetune", model, job)
    finish_training_run(session, run, "completed")
    session.execute(
        sa.text("UPDATE jobs SET started_at = now() - interval '1 hour' WHERE id = :j"), {"j": job}
    )
    # runs that failed or still run later on do not move the cut
    failed = start_training_run(session, "finetune", model)
    finish_training_run(session, failed, "failed", error="out of memory")
    start_training_run(session, "finetune", model)
    session.commit()
    after_run = labels_for_next_finetune(session)
    assert after_run.last_run_id == run and after_run.last_run_finished_at is not None
    assert (after_run.labels, after_run.documents, after_run.by_source) == (0, 0, ())

    alice = add_reviewer(session, "alice", "hash")
    session.commit()
    item = claim_next(session, alice, audit_rate=0.0)  # d[0] total
    decide(session, alice, item.token, "accept")
    item = claim_next(session, alice, audit_rate=0.0)  # d[1] company
    decide(session, alice, item.token, "absent")
    item = claim_next(session, alice, audit_rate=0.0)  # d[1] total
    decide(session, alice, item.token, "skip")  # writes no label
    store_labels(session, d[1], {"date": "2024-03-22"}, "import")
    session.commit()
    nxt = labels_for_next_finetune(session)
    assert nxt.last_run_id == run and nxt.since == after_run.since
    assert (nxt.labels, nxt.documents) == (3, 2)
    assert nxt.by_source == (SourceCount("import", 1, 1), SourceCount("review", 2, 2))


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def bars(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}rect") if e.get("class") == "bar"]


def test_the_reliability_chart_is_well_formed_svg_with_a_bar_per_bucket():
    rows = [(0.0, 0.5, 10, 4), (0.5, 0.7, 0, 0), (0.9, 0.95, 20, 19), (0.99, 1.0, 5, 5)]
    svg = reliability_svg(rows, title='total <script>alert("x")</script> & co')
    root = parse(svg)
    assert root.tag == f"{SVG}svg"
    drawn = bars(root)
    assert len(drawn) == 3  # the empty bucket has no bar
    tooltips = [bar.find(f"{SVG}title").text for bar in drawn]
    assert "4 of 10" in tooltips[0] and "19 of 20" in tooltips[1]
    # a higher accuracy is a taller bar, and the bars sit left to right by confidence
    heights = [float(bar.get("height")) for bar in drawn]
    assert heights[0] < heights[1] < heights[2]
    assert [float(bar.get("x")) for bar in drawn] == sorted(float(bar.get("x")) for bar in drawn)
    assert any(e.get("class") == "calibrated" for e in root.iter(f"{SVG}line"))
    # the title is escaped: text, never markup
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert not list(root.iter(f"{SVG}script")) and not list(root.iter("script"))
    assert root.find(f"{SVG}title").text == 'total <script>alert("x")</script> & co'


def test_the_reliability_chart_says_when_it_has_nothing_to_show():
    for rows in ([], [(0.0, 0.5, 0, 0)]):
        root = parse(reliability_svg(rows, title="company"))
        assert bars(root) == []
        empty = [e for e in root.iter(f"{SVG}text") if e.get("class") == "empty"]
        assert len(empty) == 1 and empty[0].text
