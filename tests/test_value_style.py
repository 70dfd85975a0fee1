"""Value styles: learned from labels only when they clearly agree, applied to extracted values,
and kept in a model config."""

from __future__ import annotations

import json

import pytest

from docformer.value_style import (
    ValueStyle,
    apply_value_styles,
    learn_value_styles,
    styles_from_config,
    styles_to_config,
)

UPPER = ["YHM AEON TEBRAU CITY", "22 MAR 18", "SANYU STATIONERY SHOP", "BOOK TA .K (TAMAN DAYA)"]
MIXED = ["YHM Aeon", "22 Mar 18", "SANYU STATIONERY", "gardenia bakeries"]


def repeated(values: list[str], n: int) -> list[str]:
    return [values[i % len(values)] for i in range(n)]


@pytest.mark.parametrize(
    ("labels", "case"),
    [
        pytest.param(repeated(UPPER, 40), "upper", id="all upper"),
        pytest.param(repeated(["tebrau city", "22 mar 18"], 40), "lower", id="all lower"),
        pytest.param(repeated(MIXED, 40), "as_printed", id="mixed case"),
        pytest.param(repeated(UPPER, 19), "as_printed", id="too few labels"),
        pytest.param(repeated(["9.00", "120.50", "1,234.00"], 40), "as_printed", id="digits only"),
        pytest.param(repeated(UPPER, 96) + repeated(["Tebrau City"], 4), "upper", id="96% upper"),
        pytest.param(
            repeated(UPPER, 90) + repeated(["Tebrau City"], 10), "as_printed", id="90% upper"
        ),
        # Digits-only labels do not vote: 20 upper-case ones decide among 100 labels.
        pytest.param(
            repeated(UPPER, 20) + repeated(["9.00"], 80), "upper", id="digits do not vote"
        ),
        pytest.param(
            repeated(UPPER, 19) + repeated(["9.00"], 80), "as_printed", id="too few voters"
        ),
    ],
)
def test_learned_case(labels, case):
    assert learn_value_styles({"field": labels})["field"].case == case


@pytest.mark.parametrize(
    ("labels", "trailing_period"),
    [
        pytest.param(repeated(UPPER, 40), "strip", id="no label ends with a period"),
        pytest.param(
            repeated(UPPER, 97) + ["SDN. BHD.", "CO.", "ETC."], "strip", id="3% end with one"
        ),
        pytest.param(
            repeated(["ABC SDN. BHD.", "XYZ CO.", "SHOP"], 40), "as_printed", id="common ending"
        ),
        pytest.param(repeated(UPPER, 19), "as_printed", id="too few labels"),
        pytest.param(["", None, *repeated(UPPER, 19)], "as_printed", id="empty labels skipped"),
    ],
)
def test_learned_trailing_period(labels, trailing_period):
    style = learn_value_styles({"field": labels})["field"]
    assert style.trailing_period == trailing_period
    assert style.collapse_spaces


def test_learning_every_field_and_its_thresholds():
    styles = learn_value_styles(
        {"company": repeated(UPPER, 40), "total": repeated(["9.00"], 40), "none": []}
    )
    assert styles == {
        "company": ValueStyle(case="upper", trailing_period="strip"),
        "total": ValueStyle(case="as_printed", trailing_period="strip"),
        "none": ValueStyle(),
    }
    assert learn_value_styles({"f": repeated(UPPER, 5)}, min_labels=5)["f"].case == "upper"
    mostly = repeated(UPPER, 8) + ["Mixed", "Case"]
    assert learn_value_styles({"f": mostly}, min_share=0.8, min_labels=5)["f"].case == "upper"
    with pytest.raises(ValueError, match="min_share"):
        learn_value_styles({}, min_share=0)
    with pytest.raises(ValueError, match="min_labels"):
        learn_value_styles({}, min_labels=0)


@pytest.mark.parametrize(
    ("style", "printed", "written"),
    [
        (ValueStyle(case="upper"), "22 Mar 18", "22 MAR 18"),
        (ValueStyle(case="upper"), "  YHM  Aeon\tTebrau\n City ", "YHM AEON TEBRAU CITY"),
        (ValueStyle(case="lower"), "Tebrau CITY", "tebrau city"),
        (ValueStyle(), "  Tebrau   City. ", "Tebrau City."),
        (ValueStyle(trailing_period="strip"), "ABC SDN. BHD.", "ABC SDN. BHD"),
        (ValueStyle(trailing_period="strip"), "No 3, Jalan 1. ", "No 3, Jalan 1"),
        (ValueStyle(trailing_period="strip"), "ETC. .", "ETC"),
        (ValueStyle(trailing_period="strip"), "SDN. BHD", "SDN. BHD"),
        (ValueStyle(trailing_period="strip"), "9.00", "9.00"),
        (ValueStyle(trailing_period="strip"), "...", "..."),
        (ValueStyle(case="upper", trailing_period="strip"), "Sdn. Bhd.", "SDN. BHD"),
        (ValueStyle(), "", ""),
        (ValueStyle(case="upper", collapse_spaces=False), " a  b ", " A  B "),
    ],
)
def test_apply(style, printed, written):
    assert style.apply(printed) == written


def test_apply_value_styles_leaves_fields_without_a_style():
    styles = {"company": ValueStyle(case="upper"), "date": ValueStyle(case="upper")}
    values = {"company": "Yhm  Aeon", "date": "22 Mar 18", "address": "Jalan  Tebrau."}
    assert apply_value_styles(values, styles) == {
        "company": "YHM AEON",
        "date": "22 MAR 18",
        "address": "Jalan  Tebrau.",
    }
    assert apply_value_styles(values, {}) == values


def test_config_round_trip():
    styles = {
        "company": ValueStyle(case="upper", trailing_period="strip"),
        "total": ValueStyle(),
        "note": ValueStyle(case="lower", collapse_spaces=False),
    }
    config = json.loads(json.dumps(styles_to_config(styles)))  # JSON-safe
    assert config["company"] == {
        "case": "upper",
        "collapse_spaces": True,
        "trailing_period": "strip",
    }
    assert styles_from_config(config) == styles
    assert styles_from_config(None) == {}
    # Older or newer configs: missing keys default, unknown keys are ignored.
    assert styles_from_config({"f": {"case": "upper", "later": 1}}) == {
        "f": ValueStyle(case="upper")
    }


@pytest.mark.parametrize(
    "config",
    [
        {"f": {"case": "Upper"}},
        {"f": {"trailing_period": "remove"}},
        {"f": {"collapse_spaces": "yes"}},
        {"f": "upper"},
        ["upper"],
    ],
)
def test_a_bad_config_fails_loudly(config):
    with pytest.raises(ValueError):
        styles_from_config(config)


def test_is_identity():
    assert ValueStyle(collapse_spaces=False).is_identity()
    assert not ValueStyle().is_identity()  # collapses spaces
    assert not ValueStyle(case="upper", collapse_spaces=False).is_identity()
    assert not ValueStyle(collapse_spaces=False, trailing_period="strip").is_identity()
