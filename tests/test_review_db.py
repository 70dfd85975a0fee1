"""The review queue, leases and decisions against a real PostgreSQL: what goes to review,
that two reviewers never hold one item, and what a decision writes (labels, the trail,
current_fields)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from db.labels import labelled_documents
from db.review import (
    QueueFilter,
    add_reviewer,
    claim_document,
    claim_next,
    default_threshold,
    set_threshold,
)
from db.review_decisions import LeaseLost, decide
from tests.helpers_review import seed_documents, seed_model


def receipt(total: str, confidence: float, company_confidence: float = 0.995) -> list[dict]:
    return [
        {"name": "company", "value": "ACME SDN BHD", "confidence": company_confidence},
        {
            "name": "total",
            "value": total,
            "value_num": Decimal(total),
            "confidence": confidence,
            "page": 0,
            "box": [10, 20, 60, 40],
        },
    ]


def current(session: Session, document_id: int, name: str):
    return session.execute(
        sa.text(
            "SELECT value, value_num, review_status, corrected, model_value, box"
            " FROM current_fields WHERE document_id = :d AND name = :n"
        ),
        {"d": document_id, "n": name},
    ).one()


def test_default_threshold_comes_from_the_active_models_reliability_table(session: Session):
    assert default_threshold(session) == 0.9  # no model yet: the fallback
    seed_model(session)
    session.commit()
    assert default_threshold(session) == 0.9
    assert default_threshold(session, target_accuracy=0.99) == 0.99


def test_queue_takes_unsure_fields_oldest_job_first_and_thresholds_move_it(session: Session):
    model = seed_model(session)
    first = seed_documents(session, model, [receipt("9.00", 0.42)])
    second = seed_documents(session, model, [receipt("12.50", 0.80), receipt("3.00", 0.97)])
    alice = add_reviewer(session, "alice", "hash")
    session.commit()

    no_audit = {"audit_rate": 0.0}
    item = claim_next(session, alice, **no_audit)
    assert (item.document_id, item.name, item.value) == (first[0].document_id, "total", "9.00")
    assert not item.audit and item.threshold == 0.9
    decide(session, alice, item.token, "accept")
    item = claim_next(session, alice, **no_audit)
    assert (item.document_id, item.value) == (second[0].document_id, "12.50")
    decide(session, alice, item.token, "skip")
    # 0.97 is confident, and alice skipped the other: nothing for her
    assert claim_next(session, alice, **no_audit) is None
    set_threshold(session, "total", 0.98, "alice")
    session.commit()
    item = claim_next(session, alice, **no_audit)
    assert (item.document_id, item.value) == (second[1].document_id, "3.00")
    # filters: nothing unsure under another field name or model version
    assert claim_next(session, alice, QueueFilter(field="date"), **no_audit) is None


def test_the_audit_sample_draws_confident_fields(session: Session):
    model = seed_model(session)
    seed_documents(session, model, [receipt("1.00", 0.999, 0.999) for _ in range(5)])
    alice = add_reviewer(session, "alice", "hash")
    session.commit()
    assert claim_next(session, alice, audit_rate=0.0) is None
    item = claim_next(session, alice, audit_rate=1.0)
    assert item is not None and item.audit


def test_two_reviewers_never_hold_the_same_item_and_a_lease_expires(session: Session, engine):
    model = seed_model(session)
    seed_documents(session, model, [receipt("9.00", 0.1, 0.2)])  # two unsure fields
    alice = add_reviewer(session, "alice", "hash")
    bob = add_reviewer(session, "bob", "hash")
    session.commit()

    with Session(engine) as other:
        a = claim_next(session, alice, audit_rate=0.0)
        b = claim_next(other, bob, audit_rate=0.0)
        assert {a.name, b.name} == {"company", "total"}
        assert claim_next(other, bob, audit_rate=0.0).token == b.token  # her own, again
        assert claim_next(session, alice, audit_rate=0.0).token == a.token
        # bob cannot decide on alice's lease
        with pytest.raises(LeaseLost):
            decide(other, bob, a.token, "accept")
        # alice's lease runs out: bob may take it, and alice's late decision is refused
        session.execute(
            sa.text("UPDATE review_leases SET expires_at = now() - interval '1s' WHERE token = :t"),
            {"t": a.token},
        )
        session.commit()
        decide(other, bob, b.token, "accept")
        taken = claim_next(other, bob, audit_rate=0.0)
        assert (taken.document_id, taken.name) == (a.document_id, a.name)
        with pytest.raises(LeaseLost):
            decide(session, alice, a.token, "accept")


def test_a_decision_writes_the_label_the_trail_and_current_fields_once(session: Session):
    model = seed_model(session)
    (doc,) = seed_documents(session, model, [receipt("9.00", 0.3, 0.4)])
    alice = add_reviewer(session, "alice", "hash")
    session.commit()

    total = claim_next(session, alice, QueueFilter(field="total"), audit_rate=0.0)
    first = decide(
        session,
        alice,
        total.token,
        "correct",
        value=" 19.00 ",
        normalized={"value_num": Decimal("19.00")},
        page=0,
        box=[5, 6, 50, 30],
    )
    again = decide(session, alice, total.token, "correct", value="29.00")
    assert first.recorded and not again.recorded and again.decision_id == first.decision_id
    company = claim_next(session, alice, audit_rate=0.0)
    decide(session, alice, company.token, "absent")

    assert current(session, doc.document_id, "total") == (
        "19.00",
        Decimal("19.00"),
        "corrected",
        True,
        "9.00",
        [5, 6, 50, 30],
    )
    assert current(session, doc.document_id, "company") == (
        None,
        None,
        "rejected",
        True,
        "ACME SDN BHD",
        None,
    )
    labels = session.execute(
        sa.text("SELECT name, value, source, reviewer_id FROM labels ORDER BY name")
    ).all()
    assert labels == [("company", "", "review", alice), ("total", "19.00", "review", alice)]
    trail = session.execute(sa.text("SELECT count(*) FROM review_decisions")).scalar_one()
    assert trail == 2
    statuses = session.execute(sa.text("SELECT name, review_status FROM fields ORDER BY name"))
    assert [tuple(r) for r in statuses] == [("company", "rejected"), ("total", "corrected")]
    (labelled,) = labelled_documents(session)
    assert labelled.labels == {"company": "", "total": "19.00"}
    fields = session.execute(
        sa.text("SELECT fields FROM document_fields WHERE document_id = :d"),
        {"d": doc.document_id},
    ).scalar_one()
    assert fields == {"company": None, "total": "19.00"}


def test_a_whole_document_is_leased_with_the_fields_the_model_missed(session: Session, engine):
    model = seed_model(session)
    (doc,) = seed_documents(session, model, [receipt("9.00", 0.99)])
    alice = add_reviewer(session, "alice", "hash")
    bob = add_reviewer(session, "bob", "hash")
    session.commit()
    items, others = claim_document(session, alice, doc.document_id)
    assert [i.name for i in items] == ["company", "date", "total"] and others == []
    date = next(i for i in items if i.name == "date")
    assert date.field_id is None and date.value is None
    with Session(engine) as other:
        items_b, others_b = claim_document(other, bob, doc.document_id)
        assert items_b == [] and others_b == ["company", "date", "total"]
    decide(session, alice, date.token, "correct", value="2024-03-22")
    assert [i.name for i in claim_document(session, alice, doc.document_id)[0]] == [
        "company",
        "date",
        "total",
    ]
    assert uuid.UUID(str(date.token))


def test_the_queue_follows_reprocessing_thresholds_and_decisions(session: Session):
    """The queue table is brought up to date before it is read: a document extracted again
    is queued by its new fields, a threshold set moves items in or out, a decision takes its
    item out."""
    from db.extractions import ExtractionRecord, store_extractions
    from db.review_stats import review_backlog

    model = seed_model(session)
    (doc,) = seed_documents(session, model, [receipt("9.00", 0.3, 0.95)])
    alice = add_reviewer(session, "alice", "hash")
    session.commit()

    def waiting() -> dict[str, int]:
        return {row.name: row.waiting for row in review_backlog(session, audit_rate=0.0)}

    assert waiting() == {"total": 1}
    # extracted again, now sure of the total and unsure of the company
    store_extractions(
        session, [ExtractionRecord(doc.document_id, model, None, receipt("9.50", 0.99, 0.2))]
    )
    session.commit()
    assert waiting() == {"company": 1}
    set_threshold(session, "total", 0.995, "alice")
    session.commit()
    assert waiting() == {"company": 1, "total": 1}
    item = claim_next(session, alice, QueueFilter(field="total"), audit_rate=0.0)
    assert item.value == "9.50"
    decide(session, alice, item.token, "accept")
    assert waiting() == {"company": 1}
