"""Reliability of fine-tuning and of labels, through the real `finetune` flow and the real
`docflow labels import`, on real PostgreSQL, SeaweedFS and a real Prefect API.

The active model is the random-weight DocFormerv2 of `helpers_flows` (it reads company, date
and total); every fine-tune here is the smallest the flow allows (one or two steps), since
these tests are about what gets promoted and recorded, not about what the model learns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import ROOT
from helpers_flows import FIELDS, Background, build_random_model, process_env, query, wait_for
from test_flows import prepare_services, register_active

from docformer.labelled import write_labelled_example
from docformer.synth import render_document
from flows.finetune import promotion_reason
from flows.settings import Settings

pytestmark = pytest.mark.slow


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
    reason = promotion_reason(comparison)
    assert "cannot read company, date, which tiny-base reads" in reason
    assert "fewer than 20 labelled documents" in reason

    # Dropping fields, said explicitly, promotes it; the decision is recorded with the option.
    promoted = finetune(
        max_steps=1, batch_size=4, promote_margin=-1.0, min_holdout=0, allow_fewer_fields=True
    )
    assert promoted["promoted"] and active_name(settings) == promoted["version"]
    [(metrics,)] = query(
        url, "SELECT metrics FROM training_runs WHERE id = :id", id=promoted["training_run_id"]
    )
    assert metrics["allow_fewer_fields"] and metrics["fields_dropped"] == ["company", "date"]


# --- 9: one fine-tune at a time, promotion under the lock, a killed one marked crashed ----------


@contextmanager
def table_locked(url: str, table: str) -> Iterator[Callable[[], None]]:
    """Hold `LOCK TABLE <table> IN SHARE MODE` until the block ends: a run stops at its first
    write to the table. Yields `wait_until_blocked()`, which returns once a session waits on
    it."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"LOCK TABLE {table} IN SHARE MODE"))
        sql = f"SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '{table}'::regclass"
        yield lambda: wait_for(lambda: query(url, sql)[0][0] >= 1, timeout=180, every=0.05)
    engine.dispose()


def advisory_lock_waiters(url: str) -> int:
    return query(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")[
        0
    ][0]


def test_a_version_activated_by_hand_while_a_finetune_trains_is_not_overridden(
    prefect_api, docflow_env, random_model, tmp_path
):
    """A fine-tune whose candidate would be promoted is held while it records its training run
    (it has read the active version by then). Someone activates another version by hand, and
    holds the activation until the fine-tune waits on it. The fine-tune must see that the
    active version changed and keep its candidate, not override the choice made by hand."""
    from sqlalchemy.orm import Session

    from db.model_versions import activate_model_version, register_model_version
    from flows.finetune import finetune

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    register_active(settings, random_model)
    import_receipts(tmp_path / "receipts", 4, None)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with Session(engine) as session, session.begin():
        hand_picked = register_model_version(session, "hand-picked", str(random_model))

    by_hand = Session(engine)
    with table_locked(url, "training_runs") as wait_until_blocked:
        run = Background(
            lambda: finetune(
                fields=FIELDS, max_steps=1, batch_size=4, promote_margin=-1.0, min_holdout=0
            )
        )
        wait_until_blocked()
        activate_model_version(by_hand, hand_picked, by="alice", reason="chosen by hand")
    # The fine-tune trains and evaluates, then waits for the activation lock alice holds.
    wait_for(lambda: advisory_lock_waiters(url) >= 1, timeout=240)
    by_hand.commit()
    by_hand.close()
    result = run.result()
    engine.dispose()

    assert not result["promoted"] and active_name(settings) == "hand-picked"
    [(metrics,)] = query(url, "SELECT metrics FROM training_runs")
    assert metrics["active_changed"] and "another version became active" in promotion_reason(
        metrics
    )


FINETUNE_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from flows.finetune import finetune
finetune(**json.loads(sys.argv[1]))
"""


def test_one_finetune_at_a_time_and_a_killed_one_is_marked_crashed(
    prefect_api, docflow_env, random_model, tmp_path
):
    """A fine-tune in a process of its own, training: a second one is refused while it lives.
    Killed with SIGKILL, it leaves its job and training run 'running'; the next fine-tune
    marks them crashed (the lock a live run holds was free) and runs."""
    from flows.finetune import finetune

    settings = docflow_env
    url = settings.database_url.get_secret_value()
    prepare_services(settings)
    register_active(settings, random_model)
    import_receipts(tmp_path / "receipts", 4, None)

    log = tmp_path / "finetune.log"
    # Long enough to still be training when it is killed, however fast the machine: the step
    # cap and the epoch cap (10 epochs of 4 documents by default) are both far away.
    parameters = {"fields": FIELDS, "max_steps": 100_000, "epochs": 100_000, "batch_size": 1}
    with open(log, "w") as output:
        worker = subprocess.Popen(
            [sys.executable, "-c", FINETUNE_SCRIPT, json.dumps(parameters)],
            env=process_env(),
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: query(url, "SELECT 1 FROM training_runs WHERE status = 'running'"),
            timeout=240,
        )
        with pytest.raises(Exception, match="another fine-tuning run") as refused:
            finetune(fields=FIELDS, max_steps=1, batch_size=4)
        assert type(refused.value).__name__ == "FinetuneAlreadyRunning"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=60)
    [(killed_job, status)] = query(url, "SELECT id, status FROM jobs WHERE kind = 'finetune'")
    assert status == "running", log.read_text()[-3000:]

    result = finetune(fields=FIELDS, max_steps=1, batch_size=4)
    jobs = query(url, "SELECT id, status, error FROM jobs WHERE kind = 'finetune' ORDER BY id")
    assert [(job.id, job.status) for job in jobs] == [
        (killed_job, "crashed"),
        (result["job_id"], "completed"),
    ]
    assert "the process running it was lost" in jobs[0].error
    runs = query(url, "SELECT job_id, status, error FROM training_runs ORDER BY id")
    assert [(run.job_id, run.status) for run in runs] == [
        (killed_job, "failed"),
        (result["job_id"], "completed"),
    ]
    assert runs[0].error == jobs[0].error


# --- 10: labels and OCR follow the bytes --------------------------------------------------------


def test_labels_and_ocr_follow_the_bytes_of_a_file_that_changed(prefect_api, docflow_env, tmp_path):
    """A labelled folder is imported; then its file `a` is replaced by another scan (other
    bytes, labels and OCR under the same name) and the folder imported again. Training and
    export see `a` only as its new bytes with its new labels and OCR, never the old labels with
    the new image. An object overwritten behind docflow's back (`b`) is left out of both, with
    the reason, instead of being paired with labels of other bytes."""
    import hashlib

    from flows.cli import main
    from flows.clients import object_store
    from flows.tasks_training import load_labelled_examples

    settings = docflow_env
    prepare_services(settings)
    folder = tmp_path / "labelled"
    first, second, rescan, stranger = (
        render_document("receipt", seed=13, index=index) for index in range(4)
    )
    write_labelled_example(folder, "a", first.encode(), first.fields, [first.ocr])
    write_labelled_example(folder, "b", second.encode(), second.fields, [second.ocr])
    assert main(["labels", "import", str(folder)]) == 0
    write_labelled_example(folder, "a", rescan.encode(), rescan.fields, [rescan.ocr])
    assert main(["labels", "import", str(folder)]) == 0

    def sha(document) -> str:
        return hashlib.sha256(document.encode()).hexdigest()

    def words(pages) -> list[list[str]]:
        return [[word.text for word in ocr.words] for _, ocr in pages]

    examples = {example.name: example for example in load_labelled_examples()}
    assert {name: example.fields for name, example in examples.items()} == {
        sha(rescan): rescan.fields,
        sha(second): second.fields,
    }
    assert words(examples[sha(rescan)].pages) == [[w.text for w in rescan.ocr.words]]

    exported = tmp_path / "exported"
    assert main(["labels", "export", str(exported)]) == 0
    assert (exported / "a.png").read_bytes() == rescan.encode()
    assert json.loads((exported / "a.json").read_text()) == rescan.fields
    assert sorted(path.name for path in exported.glob("*.json")) == [
        "a.json",
        "a.ocr.json",
        "b.json",
        "b.ocr.json",
    ]

    # `b` overwritten in the bucket by someone else: its labels describe bytes that are gone.
    store = object_store(settings)
    keys = [o.key for o in store.list_objects(settings.inbox_bucket)]
    [b_key] = [key for key in keys if key.rsplit("/", 1)[-1].startswith("b.")]
    store.put_bytes(settings.inbox_bucket, b_key, stranger.encode())
    assert [example.name for example in load_labelled_examples()] == [sha(rescan)]
    again = tmp_path / "exported-again"
    assert main(["labels", "export", str(again)]) == 1
    assert sorted(path.name for path in again.glob("*.json")) == ["a.json", "a.ocr.json"]
