"""Reliability of fine-tuning and of labels, through the real `finetune` flow and the real
`docflow labels import`, on real PostgreSQL, SeaweedFS and a real Prefect API.

The active model is the random-weight DocFormerv2 of `helpers_flows` (it reads company, date
and total); every fine-tune here is the smallest the flow allows (one or two steps), since
these tests are about what gets promoted and recorded, not about what the model learns.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_flows import FIELDS, build_random_model, query
from test_flows import prepare_services, register_active

from docformer.labelled import write_labelled_example
from docformer.synth import render_document
from flows.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    from flows.deployments import ensure_concurrency_limits

    with prefect_test_harness(server_startup_timeout=120):
        ensure_concurrency_limits()
        yield


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    return build_random_model(tmp_path_factory.getbasetemp() / "random-docformerv2")


def import_receipts(folder: Path, count: int, fields: list[str] | None, seed: int = 11) -> None:
    """`count` synthetic receipts written as a labelled folder (labels: only `fields` of each,
    or all of them) and imported with `docflow labels import`."""
    from flows.cli import main

    for index in range(count):
        document = render_document("receipt", seed=seed, index=index)
        labels = {name: document.fields[name] for name in (fields or document.fields)}
        write_labelled_example(folder, document.name, document.encode(), labels, [document.ocr])
    assert main(["labels", "import", str(folder)]) == 0


def active_name(settings: Settings) -> str:
    url = settings.database_url.get_secret_value()
    [(name,)] = query(url, "SELECT name FROM model_versions WHERE status = 'active'")
    return name


# --- 5: a label import cannot promote a model that drops fields --------------------------------


def test_a_total_only_label_import_cannot_promote_a_model_that_drops_fields(
    prefect_api, docflow_env, random_model, tmp_path
):
    """Ten receipts labelled only with `total`: fine-tuning learns only `total`. Even with a
    margin any version beats, the candidate is kept: it cannot read company and date, which
    the active version reads, and the holdout is too small to judge. The comparison covers the
    active version's whole field set. Only the explicit options promote it."""
    from flows.finetune import finetune

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    register_active(settings, random_model)
    import_receipts(tmp_path / "totals", 10, ["total"])

    kept = finetune(max_steps=1, batch_size=4, promote_margin=-1.0)
    assert not kept["promoted"] and active_name(settings) == "tiny-base"
    [run] = query(url, "SELECT metrics FROM training_runs ORDER BY id")
    comparison = run.metrics
    assert comparison["compared_fields"] == FIELDS
    assert comparison["new_fields"] == ["total"]
    assert comparison["fields_dropped"] == ["company", "date"]
    assert set(comparison["new_holdout"]["fields"]) == set(FIELDS)
    assert comparison["holdout_labels"] == {"company": 0, "date": 0, "total": kept["holdout_size"]}
    assert comparison["min_holdout"] == 20
    from flows.finetune import promotion_reason

    reason = promotion_reason(comparison)
    assert "cannot read company, date, which tiny-base reads" in reason
    assert "fewer than 20 labelled documents" in reason

    # A holdout of any size is allowed now: the missing fields alone still keep it.
    kept = finetune(max_steps=1, batch_size=4, promote_margin=-1.0, min_holdout=0)
    assert not kept["promoted"] and active_name(settings) == "tiny-base"

    # Dropping fields, said explicitly, promotes it; the decision is recorded with the option.
    promoted = finetune(
        max_steps=1, batch_size=4, promote_margin=-1.0, min_holdout=0, allow_fewer_fields=True
    )
    assert promoted["promoted"] and active_name(settings) == promoted["version"]
    [(metrics,)] = query(
        url, "SELECT metrics FROM training_runs WHERE id = :id", id=promoted["training_run_id"]
    )
    assert metrics["allow_fewer_fields"] and metrics["fields_dropped"] == ["company", "date"]
