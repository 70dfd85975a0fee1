"""Aligning labelled values to runs of OCR words (docformer.alignment)."""

from __future__ import annotations

import json

import pytest

from docformer import extraction, grounding
from docformer.alignment import (
    AlignmentReport,
    ValueAlignment,
    align_examples,
    align_value,
    find_value_runs,
    printed_label,
    usual_labels,
    usual_places,
)
from docformer.document import OCRResult, Word

PAGE_WIDTH, PAGE_HEIGHT, LINE_HEIGHT = 400, 600, 30


def ocr_page(*lines: str) -> OCRResult:
    """A page with one line of words per argument, top to bottom; "" leaves a line empty."""
    words = []
    for line_id, line in enumerate(lines):
        x, y = 10.0, 10.0 + LINE_HEIGHT * line_id
        for text in line.split():
            width = 10.0 * len(text)
            words.append(Word(text, (x, y, x + width, y + 20.0), 0.99, line_id))
            x += width + 10.0
    return OCRResult(PAGE_WIDTH, PAGE_HEIGHT, words, engine="test")


def aligned_text(found: ValueAlignment, pages: list[OCRResult]) -> str:
    return " ".join(pages[found.page].words[i].text for i in found.word_indices)


def line_of(found: ValueAlignment, pages: list[OCRResult]) -> int:
    return pages[found.page].words[found.word_indices[0]].line_id


# A receipt whose total (9.00) is printed at the top (line 1) and at the bottom (line 18).
TOTAL_TWICE = ocr_page("TAX INVOICE", "AMOUNT 9.00", *[""] * 16, "TOTAL 9.00")


@pytest.mark.parametrize(
    ("value", "lines", "method", "printed"),
    [
        pytest.param(
            "YHM AEON TEBRAU CITY",
            ["TAX INVOICE", "YHM AEON TEBRAU CITY", "TOTAL 9.00"],
            "exact",
            "YHM AEON TEBRAU CITY",
            id="exact",
        ),
        pytest.param(
            "22 MAR 18", ["DATE: 22 Mar 18 10:21"], "case-insensitive", "22 Mar 18", id="case"
        ),
        pytest.param("LEVEL 6", ["Level6 MENARA AXIS"], "spacing", "Level6", id="spacing"),
        pytest.param(
            "JALAN SS21/39,47400",
            ["NO 1", "Jalan SS21/39, 47400 PETALING JAYA"],
            "spacing",
            "Jalan SS21/39, 47400",
            id="spacing-across-a-comma",
        ),
        pytest.param("9.00", ["TOTAL RM9.00"], "substring", "RM9.00", id="substring"),
        pytest.param(
            "9.00", ["CASH 19.00", "TOTAL RM9.00"], "substring", "RM9.00", id="substring-not-19.00"
        ),
        pytest.param(
            "TED HENG", ["TEO HENG STATIONERY", "TOTAL 9.00"], "fuzzy", "TEO HENG", id="fuzzy"
        ),
    ],
)
def test_align_value_stages(value: str, lines: list[str], method: str, printed: str) -> None:
    pages = [ocr_page(*lines)]
    found = align_value("field", value, pages)
    assert found is not None
    assert (found.field, found.page, found.method) == ("field", 0, method)
    assert aligned_text(found, pages) == printed
    assert list(found.word_indices) == sorted(found.word_indices)
    if method == "fuzzy":
        assert 80 <= found.score < 100
    else:
        assert found.score == 100


@pytest.mark.parametrize(
    ("usual_place", "expected_line"),
    [
        pytest.param((0.5, 0.95), 18, id="usual-place-at-the-bottom"),
        pytest.param((0.1, 0.05), 1, id="usual-place-at-the-top"),
        pytest.param(None, 1, id="no-usual-place-first-in-reading-order"),
    ],
)
def test_value_printed_twice(usual_place: tuple[float, float] | None, expected_line: int) -> None:
    pages = [TOTAL_TWICE]
    found = align_value("total", "9.00", pages, usual_place=usual_place)
    assert found is not None and found.method == "exact"
    assert aligned_text(found, pages) == "9.00"
    assert line_of(found, pages) == expected_line


def test_find_value_runs_returns_every_occurrence() -> None:
    method, score, runs = find_value_runs("9.00", TOTAL_TWICE)
    assert (method, score) == ("exact", 100.0)
    assert [[TOTAL_TWICE.words[i].line_id for i in run] for run in runs] == [[1], [18]]


@pytest.mark.parametrize(
    ("value", "pages"),
    [
        pytest.param("INV-000123", [TOTAL_TWICE], id="absent"),
        pytest.param("9.50", [TOTAL_TWICE], id="too-far-for-fuzzy"),
        pytest.param("", [TOTAL_TWICE], id="empty-value"),
        pytest.param("  \n", [TOTAL_TWICE], id="blank-value"),
        pytest.param("9.00", [OCRResult(10, 10, [])], id="no-words"),
        pytest.param("9.00", [], id="no-pages"),
    ],
)
def test_nothing_to_align(value: str, pages: list[OCRResult]) -> None:
    assert align_value("total", value, pages) is None


def test_multi_page_value_on_the_second_page() -> None:
    pages = [ocr_page("INVOICE", "NOTHING TO SEE"), ocr_page("TOTAL 9.00")]
    found = align_value("total", "9.00", pages)
    assert found is not None and (found.page, found.method) == (1, "exact")
    assert aligned_text(found, pages) == "9.00"


def test_multi_page_strictest_stage_wins_across_pages() -> None:
    # A typo-ed copy on page 0 loses to the exact one on page 1, although page 0 comes first.
    pages = [ocr_page("TEO HENG STATIONERY"), ocr_page("TED HENG STATIONERY")]
    found = align_value("company", "TED HENG", pages)
    assert found is not None and (found.page, found.method) == (1, "exact")
    # Same stage on both pages: first page first, unless the usual place says otherwise.
    pages = [ocr_page("TOTAL 9.00"), ocr_page(*[""] * 18, "TOTAL 9.00")]
    assert align_value("total", "9.00", pages).page == 0
    assert align_value("total", "9.00", pages, usual_place=(0.1, 0.95)).page == 1


def test_usual_places_is_the_mean_centre_in_page_fractions() -> None:
    top, bottom = ocr_page("9.00"), ocr_page(*[""] * 18, "9.00")
    places = usual_places(
        [
            (ValueAlignment("total", 0, (0,), "exact", 100.0), top),
            (ValueAlignment("total", 0, (0,), "exact", 100.0), bottom),
        ]
    )
    # "9.00" spans x 10..50 and y 10..30 (top) or 550..570 (bottom).
    assert places["total"] == pytest.approx((30 / PAGE_WIDTH, (20 + 560) / 2 / PAGE_HEIGHT))
    assert usual_places([]) == {}


def test_alignment_report_counts() -> None:
    report = AlignmentReport()
    report.add("total", ValueAlignment("total", 0, (3,), "fuzzy", 88.0))
    report.add("total", ValueAlignment("total", 0, (1,), "exact", 100.0))
    report.add("total", ValueAlignment("total", 0, (2,), "exact", 100.0))
    report.add("total", None)
    report.add("company", None)
    expected = {
        "total": {
            "labels": 4,
            "aligned": 3,
            "by_method": {"exact": 2, "fuzzy": 1},
            "printed_more_than_once": 0,
        },
        "company": {"labels": 1, "aligned": 0, "by_method": {}, "printed_more_than_once": 0},
    }
    assert report.to_dict() == expected
    assert json.loads(json.dumps(report.to_dict())) == expected


def test_align_examples_learns_the_usual_place_from_unique_values() -> None:
    bottom_total = ocr_page("ACME SDN BHD", *[""] * 17, "TOTAL 12.50")
    examples = [
        ({"total": "12.50", "company": "ACME SDN BHD"}, [bottom_total]),
        ({"total": "7.20", "company": "ACME SDN BHD"}, [ocr_page("ACME", *[""] * 17, "7.20")]),
        # Ambiguous: first in reading order would be the top one; the usual place says bottom.
        ({"total": "9.00", "company": "", "date": "01/01/2019"}, [TOTAL_TWICE]),
    ]
    results, report = align_examples(examples)

    assert [sorted(result) for result in results] == [["company", "total"], ["total"], ["total"]]
    assert line_of(results[0]["total"], [bottom_total]) == 18
    assert line_of(results[2]["total"], [TOTAL_TWICE]) == 18
    assert results[2]["total"] == align_value("total", "9.00", [TOTAL_TWICE], (0.05, 0.95))
    # the copy not chosen (line 1) is kept, for training to leave out of the loss
    ((page, run),) = results[2]["total"].also_printed
    assert line_of(ValueAlignment("total", page, run, "exact", 100.0), [TOTAL_TWICE]) == 1
    assert report.to_dict() == {
        "total": {
            "labels": 3,
            "aligned": 3,
            "by_method": {"exact": 3},
            "printed_more_than_once": 1,
        },
        # "ACME SDN BHD" is nowhere near the lone word "ACME" (fuzzy ratio 50); "" is skipped.
        "company": {
            "labels": 2,
            "aligned": 1,
            "by_method": {"exact": 1},
            "printed_more_than_once": 0,
        },
        "date": {"labels": 1, "aligned": 0, "by_method": {}, "printed_more_than_once": 0},
    }


def test_a_value_printed_twice_goes_to_the_copy_after_the_fields_usual_label() -> None:
    # Receipts that print their total once say it follows "TOTAL"; on a receipt paid exactly,
    # the CASH line prints the same amount nearer the bottom, where totals usually sit, but
    # the copy after TOTAL is the one tagged.
    once = [
        ({"total": "12.50"}, [ocr_page("ACME", *[""] * 15, "TOTAL 12.50", "", "CASH 20.00")]),
        ({"total": "7.20"}, [ocr_page("ACME", *[""] * 15, "Total: 7.20", "", "CASH 10.00")]),
    ]
    paid_exactly = ocr_page("ACME", *[""] * 15, "TOTAL 9.00", "", "CASH 9.00")
    results, _ = align_examples([*once, ({"total": "9.00"}, [paid_exactly])])
    assert line_of(results[2]["total"], [paid_exactly]) == 16
    assert usual_labels(
        [(results[0]["total"], once[0][1][0]), (results[1]["total"], once[1][1][0])]
    ) == {"total": {"total": 1.0}}
    assert printed_label(results[2]["total"].word_indices, paid_exactly) == {"total"}
    # without labels learned, place alone picks the CASH line
    assert line_of(align_value("total", "9.00", [paid_exactly], (0.05, 0.95)), [paid_exactly]) == 18


def test_align_examples_without_a_usual_place_takes_the_first() -> None:
    results, report = align_examples([({"total": "9.00"}, [TOTAL_TWICE])])
    assert line_of(results[0]["total"], [TOTAL_TWICE]) == 1
    assert report.to_dict()["total"] == {
        "labels": 1,
        "aligned": 1,
        "by_method": {"exact": 1},
        "printed_more_than_once": 1,
    }


def test_grounding_still_importable_from_extraction() -> None:
    assert extraction.ground_answer is grounding.ground_answer
    assert extraction.Grounding is grounding.Grounding
    assert extraction.union_box is grounding.union_box
    assert {"Grounding", "ground_answer", "union_box"} <= set(extraction.__all__)
