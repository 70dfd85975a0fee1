"""Scores: exact SROIE matching, and the case-insensitive figures reported beside it."""

from __future__ import annotations

import pytest

from docformer.metrics import FieldScore, score_fields


def test_case_insensitive_match_beside_the_exact_one():
    predictions = [{"date": "22 Mar 18", "total": "9.00"}]
    labels = [{"date": "22 MAR 18", "total": "9.00"}]
    scores = score_fields(predictions, labels)
    date = scores["date"]
    assert (date.true_positives, date.false_positives, date.false_negatives) == (0, 1, 1)
    assert date.f1 == 0.0  # exact: case counts
    assert (
        date.true_positives_case_insensitive,
        date.false_positives_case_insensitive,
        date.false_negatives_case_insensitive,
    ) == (1, 0, 0)
    assert date.f1_case_insensitive == 1.0
    overall = scores["overall"]
    assert overall.f1 == pytest.approx(0.5)  # 1 of 2 right: precision 1/2, recall 1/2
    assert overall.f1_case_insensitive == 1.0


def test_case_insensitive_counts_otherwise_follow_the_exact_rules():
    predictions = [
        {"company": "Aeon  Co", "total": "9.00"},  # whitespace is normalised in both
        {"company": "Other", "total": ""},  # wrong either way; total missed
        {"company": "", "total": "5.00"},  # total predicted where none is labelled
    ]
    labels = [
        {"company": "AEON CO", "total": "9.00"},
        {"company": "AEON CO", "total": "1.00"},
        {"company": "", "total": None},
    ]
    scores = score_fields(predictions, labels)
    company, total = scores["company"], scores["total"]
    assert (company.true_positives, company.false_positives, company.false_negatives) == (0, 2, 2)
    assert (
        company.true_positives_case_insensitive,
        company.false_positives_case_insensitive,
        company.false_negatives_case_insensitive,
    ) == (1, 1, 1)
    assert company.precision_case_insensitive == company.recall_case_insensitive == 0.5
    # No letters in totals: both ways agree.
    assert (total.true_positives, total.false_positives, total.false_negatives) == (1, 1, 1)
    assert total.f1_case_insensitive == total.f1 == pytest.approx(0.5)
    overall = scores["overall"]
    assert overall.true_positives_case_insensitive == 2
    assert overall.false_positives_case_insensitive == 2
    assert overall.false_negatives_case_insensitive == 2
    # casefold: caseless forms match where lower() would not.
    assert score_fields([{"street": "STRASSE"}], [{"street": "Straße"}])["street"].f1 == 0.0
    assert score_fields([{"street": "STRASSE"}], [{"street": "Straße"}])[
        "street"
    ].f1_case_insensitive == pytest.approx(1.0)


def test_to_dict_keeps_the_exact_keys_and_adds_named_case_insensitive_ones():
    scores = score_fields([{"date": "22 Mar 18"}], [{"date": "22 MAR 18"}])
    data = scores["date"].to_dict()
    assert data["f1"] == 0.0 and data["precision"] == 0.0 and data["recall"] == 0.0
    assert data["true_positives"] == 0 and data["support"] == 1 and data["field"] == "date"
    assert data["f1_case_insensitive"] == 1.0
    assert data["precision_case_insensitive"] == data["recall_case_insensitive"] == 1.0
    assert data["true_positives_case_insensitive"] == 1
    exact_keys = {
        "field", "support", "true_positives", "false_positives", "false_negatives", "anls_sum",
        "precision", "recall", "f1", "anls",
    }  # fmt: skip
    assert exact_keys <= set(data)
    assert all("case_insensitive" in key for key in set(data) - exact_keys)


def test_an_empty_score_is_zero_both_ways():
    empty = FieldScore("none")
    assert empty.f1 == empty.f1_case_insensitive == 0.0
    assert empty.precision_case_insensitive == empty.recall_case_insensitive == 0.0
