"""The model lifecycle from the command line, on the real services: labels in, `docflow finetune`,
`models show` / `compare` / `activate` / `rollback`, the next digitize, `docflow pretrain`, and
`labels list` / `export` / `import` as a round trip.

One database, one pair of buckets and one fine-tuning run (the smallest the flow allows) are
shared by the tests of this module; each test leaves the active version as it found it.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import test_flows
from test_flows import FIELDS, prepare_services, register_active, seed_ocr_cache

from docformer.labelled import iter_labelled_folder, write_labelled_example
from flows.cli import main
from flows.settings import Settings

receipts = test_flows.receipts
tiny_model = test_flows.tiny_model


def docflow(*argv: str) -> tuple[int, str]:
    """Run a `docflow` command in this process; (exit code, what it printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


def rows(settings: Settings, sql: str, **params) -> list[sa.Row]:
    engine = sa.create_engine(settings.database_url.get_secret_value())
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))
    finally:
        engine.dispose()


def active_version(settings: Settings) -> str:
    return rows(settings, "SELECT name FROM model_versions WHERE status = 'active'")[0].name


@dataclass
class Lifecycle:
    settings: Settings
    labelled: Path  # the folder the labels were imported from
    finetune_output: str
    candidate: str  # the version `docflow finetune` trained


@pytest.fixture(scope="module")
def lifecycle(
    prefect_api, pg_server, s3_server, receipts, tiny_model, tmp_path_factory
) -> Iterator[Lifecycle]:
    """Services for this module (its own database and buckets), the tiny model active as
    `tiny-base`, the receipts imported as labels, and one `docflow finetune` run."""
    from flows.settings import get_settings

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    home = tmp_path_factory.mktemp("lifecycle")
    suffix = uuid.uuid4().hex[:8]
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in {
                "DOCFLOW_HOME": str(home / "home"),
                "DOCFLOW_DATABASE_URL": pg_server.rsplit("/", 1)[0] + f"/{name}",
                "DOCFLOW_S3_ENDPOINT": s3_server.endpoint,
                "DOCFLOW_S3_ACCESS_KEY": s3_server.access_key,
                "DOCFLOW_S3_SECRET_KEY": s3_server.secret_key,
                "DOCFLOW_INBOX_BUCKET": f"inbox-{suffix}",
                "DOCFLOW_ARTIFACT_BUCKET": f"artifacts-{suffix}",
                "COLUMNS": "250",  # rich tables: room for every column
            }.items():
                patch.setenv(key, value)
            get_settings.cache_clear()
            settings = Settings()
            prepare_services(settings)
            register_active(settings, tiny_model)
            folder = home / "corrected"
            for document in receipts:
                write_labelled_example(
                    folder, document.name, document.encode(), document.fields, [document.ocr]
                )
            code, out = docflow("labels", "import", str(folder))
            assert code == 0, out
            # The smallest run the flow allows: two steps on the receipts' three fields.
            code, out = docflow(
                "finetune", "--local", "--fields", ",".join(FIELDS), "--max-steps", "2",
                "--batch-size", "4",
            )  # fmt: skip
            assert code == 0, out
            [candidate] = rows(
                settings, "SELECT name FROM model_versions WHERE name LIKE 'finetune-%'"
            )
            yield Lifecycle(settings, folder, out, candidate.name)
    finally:
        get_settings.cache_clear()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def digitized(lifecycle: Lifecycle) -> Lifecycle:
    """The imported receipts digitized by the active version (their OCR in the cache, as if an
    earlier run had read them)."""
    seed_ocr_cache(lifecycle.settings, test_flows.synth_receipts())
    code, out = docflow("run", "--local")
    assert code == 0 and "completed" in out, out
    return lifecycle


def extracted_with(settings: Settings) -> set[str]:
    return {r.model_version for r in rows(settings, "SELECT model_version FROM current_fields")}


# --- tests -----------------------------------------------------------------------------------


def test_every_lifecycle_command_parses():
    from flows.cli import build_parser

    parser = build_parser()
    for argv in (
        ["finetune", "--base", "v1", "--wait", "--max-steps", "5", "--fields", "date,total"],
        ["pretrain", "--steps", "100", "--local"],
        ["models", "list"],
        ["models", "show", "v1"],
        ["models", "compare", "v1", "v2", "--evaluate", "--fields", "total"],
        ["models", "activate", "v1", "--reason", "better", "--by", "alice"],
        ["models", "rollback"],
        ["labels", "list", "--source", "review"],
        ["labels", "export", "out/"],
    ):
        parser.parse_args(argv)


def test_finetune_records_a_run_and_a_candidate_and_prints_the_comparison(
    lifecycle: Lifecycle,
):
    settings, out = lifecycle.settings, lifecycle.finetune_output
    # The base reads these receipts perfectly already: the new version cannot beat it.
    assert f"{lifecycle.candidate} kept as a candidate" in out
    assert "active F1" in out and "new F1" in out
    assert all(field in out for field in FIELDS) and "overall" in out
    assert "not better by more than the margin 0.01" in out
    [run] = rows(settings, "SELECT * FROM training_runs")
    assert (run.kind, run.status) == ("finetune", "completed")
    assert run.train_size + run.holdout_size == len(test_flows.synth_receipts())
    # Every training document carries the three fields (and others the run did not learn).
    seen = run.metrics["labels"]
    assert all(seen["train"][f] == run.train_size for f in FIELDS)
    assert all(seen["holdout"][f] == run.holdout_size for f in FIELDS)

    # What `docflow finetune --wait` reads of a run on a server: its progress artifact (at 100%
    # once trained), and the training run of its job, printed as the same table.
    from prefect.client.orchestration import get_client

    from flows.cli.training import finished_training_run, follow_flow_run, progress_percent

    [job] = rows(settings, "SELECT flow_run_id FROM jobs WHERE kind = 'finetune'")
    with get_client(sync_client=True) as client:
        assert progress_percent(client, job.flow_run_id, "finetune-progress") == 100.0
    flow_run = follow_flow_run(job.flow_run_id, "finetune-progress")
    assert finished_training_run(flow_run) == run.id

    versions = rows(
        settings,
        "SELECT v.name, v.status, p.name AS parent FROM model_versions v "
        "LEFT JOIN model_versions p ON p.id = v.parent_id ORDER BY v.id",
    )
    assert [(v.name, v.status, v.parent) for v in versions] == [
        ("tiny-base", "active", None),
        (lifecycle.candidate, "candidate", "tiny-base"),
    ]


def test_show_and_compare(lifecycle: Lifecycle):
    candidate = lifecycle.candidate
    code, out = docflow("models", "show", candidate)
    assert code == 0, out
    assert "parent" in out and "tiny-base" in out and "training run" in out
    assert "labels it saw" in out and "scores per field (its training run's holdout)" in out
    code, out = docflow("models", "show", "tiny-base")
    assert code == 0 and "registered as the active version" in out, out

    code, stored = docflow("models", "compare", "tiny-base", candidate)
    assert code == 0, stored
    assert "tiny-base F1" in stored and f"{candidate} F1" in stored
    assert "as training run" in stored and "overall" in stored
    fields = ",".join(FIELDS)
    code, evaluated = docflow(
        "models", "compare", "tiny-base", candidate, "--evaluate", "--fields", fields
    )
    assert code == 0, evaluated
    assert "evaluated now on the holdout of the labels stored now" in evaluated

    # Scored now on the labels' holdout, the same documents the fine-tuning run held out: the
    # same table as the one it stored.
    def table(out: str) -> list[str]:
        return [line for line in out.splitlines() if line.startswith(("┃", "│"))]

    assert table(evaluated) == table(stored)

    code, out = docflow("models", "compare", "tiny-base", "no-such-version")
    assert code == 1 and "no model version named 'no-such-version'" in out
    code, out = docflow("finetune", "--local", "--base", "no-such-version")
    assert code == 1 and "no model version named 'no-such-version'" in out
    assert len(rows(lifecycle.settings, "SELECT id FROM jobs WHERE kind = 'finetune'")) == 1


def test_activate_then_rollback_and_the_next_digitize_uses_the_active_version(
    digitized: Lifecycle,
):
    settings, candidate = digitized.settings, digitized.candidate
    assert extracted_with(settings) == {"tiny-base"}

    code, out = docflow("models", "activate", candidate, "--by", "alice", "--reason", "try it")
    assert code == 0 and f"{candidate} is now the active model version (was tiny-base)" in out
    assert active_version(settings) == candidate
    # Documents already extracted keep their extraction until they are reprocessed.
    assert docflow("run", "--local")[0] == 0
    assert extracted_with(settings) == {"tiny-base"}
    assert docflow("run", "--local", "--reprocess")[0] == 0
    assert extracted_with(settings) == {candidate}

    code, out = docflow("models", "rollback", "--reason", "worse on our scans")
    assert code == 0 and f"tiny-base is now the active model version (was {candidate})" in out
    assert active_version(settings) == "tiny-base"
    assert docflow("run", "--local", "--reprocess")[0] == 0
    assert extracted_with(settings) == {"tiny-base"}

    history = rows(
        settings,
        "SELECT v.name, a.kind, a.activated_by, a.reason, p.name AS previous "
        "FROM model_activations a JOIN model_versions v ON v.id = a.model_version_id "
        "LEFT JOIN model_versions p ON p.id = a.previous_version_id ORDER BY a.id",
    )
    assert [(h.name, h.kind, h.previous) for h in history] == [
        ("tiny-base", "activate", None),
        (candidate, "activate", "tiny-base"),
        ("tiny-base", "rollback", candidate),
    ]
    assert (history[1].activated_by, history[1].reason) == ("alice", "try it")
    assert "@" in history[2].activated_by and history[2].reason == "worse on our scans"
    code, out = docflow("models", "show", candidate)
    assert "alice" in out and "try it" in out

    # Rolling back again has nowhere to go: tiny-base was the first active version.
    code, out = docflow("models", "rollback")
    assert code == 1 and "nothing to roll back to" in out
    assert active_version(settings) == "tiny-base"


def test_activate_refuses_a_version_whose_weights_are_gone(
    lifecycle: Lifecycle, tiny_model: Path, tmp_path: Path
):
    from db.model_versions import register_model_version
    from db.session import session_scope
    from flows.clients import object_store, sessions

    settings = lifecycle.settings
    folder = tmp_path / "deleted-model"
    shutil.copytree(tiny_model, folder)
    store = object_store(settings)
    prefix = "models/half-deleted"
    store.upload_folder(tiny_model, settings.artifact_bucket, prefix)
    store.remove(settings.artifact_bucket, f"{prefix}/model.safetensors")
    with session_scope(sessions(settings)) as session:
        register_model_version(session, "deleted-folder", str(folder))
        register_model_version(session, "half-deleted", f"s3://{settings.artifact_bucket}/{prefix}")
    shutil.rmtree(folder)
    before = rows(settings, "SELECT id, status FROM model_versions ORDER BY id")
    activations = rows(settings, "SELECT count(*) AS n FROM model_activations")[0].n

    code, out = docflow("models", "activate", "deleted-folder")
    assert code == 1
    assert "cannot activate deleted-folder: its weights cannot be loaded" in out
    assert f"{folder} does not exist" in out and "Nothing was changed" in out
    code, out = docflow("models", "activate", "half-deleted")
    assert code == 1 and "lacks model.safetensors" in out and "Nothing was changed" in out

    assert rows(settings, "SELECT id, status FROM model_versions ORDER BY id") == before
    assert rows(settings, "SELECT count(*) AS n FROM model_activations")[0].n == activations


def test_labels_list_export_and_import_are_a_round_trip(lifecycle: Lifecycle, tmp_path: Path):
    from db.labels import labelled_documents
    from flows.clients import sessions

    settings = lifecycle.settings
    documents = test_flows.synth_receipts()
    code, out = docflow("labels", "list")
    assert code == 0 and f"{len(documents)} labelled documents" in out
    assert all(d.fields["total"] in out for d in documents)
    code, out = docflow("labels", "list", "--source", "review")
    assert code == 0 and "0 labelled documents from source 'review'" in out

    exported = tmp_path / "exported"
    code, out = docflow("labels", "export", str(exported))
    assert code == 0 and f"{len(documents)} labelled documents written" in out, out

    def contents(folder: Path) -> list[tuple]:
        return [
            (e.name, e.document_path.read_bytes(), e.fields, [p.to_dict() for p in e.ocr_pages])
            for e in iter_labelled_folder(folder)
        ]

    assert contents(exported) == contents(lifecycle.labelled)

    with sessions(settings)() as session:
        before = labelled_documents(session)
    code, out = docflow("labels", "import", str(exported))
    assert code == 0 and f"{len(documents)} documents" in out
    with sessions(settings)() as session:
        after = labelled_documents(session)
    # The same contents are the same documents, with the same labels.
    assert [(d.document_id, d.sha256, d.labels) for d in after] == [
        (d.document_id, d.sha256, d.labels) for d in before
    ]


def test_pretrain_from_the_command_line(digitized: Lifecycle):
    settings = digitized.settings
    active = active_version(settings)
    code, out = docflow(
        "pretrain", "--local", "--steps", "2", "--batch-size", "2", "--max-pages", "2"
    )
    assert code == 0, out
    [run] = rows(
        settings,
        "SELECT r.status, r.train_size, v.name, v.status AS version_status, b.name AS base "
        "FROM training_runs r JOIN model_versions v ON v.id = r.result_version_id "
        "JOIN model_versions b ON b.id = r.base_version_id WHERE r.kind = 'pretrain'",
    )
    assert (run.status, run.train_size, run.version_status) == ("completed", 2, "candidate")
    assert run.base == active and run.name.startswith("pretrain-")
    assert f"candidate {run.name} (from {active})" in out
    assert f"docflow finetune --base {run.name}" in out


def test_rollback_walks_back_through_history_kept_before_and_after_the_migration(
    empty_database_url: str,
):
    """Versions activated before `model_activations` existed get one history row each (the
    active one last), and rollback replays the history as a stack: after v1, v2, v3 it goes
    to v2, then v1, never back to the version it just left."""
    from sqlalchemy.orm import Session

    from db import migrate
    from db.model_versions import activate_model_version, rollback_target
    from db.models import ActivationKind

    migrate.upgrade(empty_database_url, "0002")
    engine = sa.create_engine(empty_database_url)
    with engine.begin() as conn:  # plain SQL: the query functions write the history 0002 lacks
        conn.execute(
            sa.text(
                "INSERT INTO model_versions (name, uri, status, activated_at) VALUES "
                "('v1', '/m/v1', 'retired', now() - interval '2 days'), "
                "('v2', '/m/v2', 'active', now() - interval '1 day'), "
                "('unused', '/m/unused', 'candidate', NULL)"
            )
        )
    migrate.upgrade(empty_database_url)
    with Session(engine) as session:
        names = dict(session.execute(sa.text("SELECT id, name FROM model_versions")).all())
        ids = {name: id_ for id_, name in names.items()}
        history = session.execute(
            sa.text(
                "SELECT model_version_id, previous_version_id, kind, activated_by "
                "FROM model_activations ORDER BY id"
            )
        ).all()
        assert [(names[v], p and names[p], k, by) for v, p, k, by in history] == [
            ("v1", None, "activate", "unknown"),
            ("v2", "v1", "activate", "unknown"),
        ]
        assert rollback_target(session).name == "v1"

        session.execute(sa.text("INSERT INTO model_versions (name, uri) VALUES ('v3', '/m/v3')"))
        v3 = session.execute(sa.text("SELECT id FROM model_versions WHERE name = 'v3'")).scalar()
        activate_model_version(session, v3, by="carol")
        for expected in ("v2", "v1"):
            target = rollback_target(session)
            assert target.name == expected
            activate_model_version(session, target.id, by="carol", kind=ActivationKind.ROLLBACK)
        assert rollback_target(session) is None
        # Activating again after rolling back starts a new step on top of the history.
        activate_model_version(session, ids["v2"], by="carol")
        assert rollback_target(session).name == "v1"
        session.commit()
    engine.dispose()
    migrate.downgrade(empty_database_url, "0002")
    assert migrate.current(empty_database_url) == "0002"
