"""`docflow models`: list, show and compare model versions, and change the active one
(activate, rollback) after checking that its weights load."""

from __future__ import annotations

import argparse

from flows.cli.common import (
    CommandError,
    field_names,
    load_settings,
    open_session,
    print_rows,
    rounded,
    version_named,
)
from flows.cli.training import flow_errors, training_bar


def cmd_models(args: argparse.Namespace) -> int:
    from db.model_versions import list_model_versions

    with open_session() as session:
        versions = list_model_versions(session)
    print_rows(
        ["id", "name", "status", "parent", "created", "activated", "f1", "uri"],
        [
            (
                v.id,
                v.name,
                v.status,
                v.parent,
                _time(v.created_at),
                _time(v.activated_at),
                rounded(v.f1),
                v.uri,
            )
            for v in versions
        ],
        title="model versions",
    )
    return 0


def _time(value) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def cmd_models_show(args: argparse.Namespace) -> int:
    """One version: where it is, where it came from (parent, training run, the labels it saw),
    its scores per field, and every time it was made active."""
    from db.model_versions import model_activations
    from db.models import ModelVersion
    from db.training_runs import training_run_of_version

    with open_session() as session:
        version = version_named(session, args.version)
        parent = session.get(ModelVersion, version.parent_id) if version.parent_id else None
        run = training_run_of_version(session, version.id)
        base = (
            session.get(ModelVersion, run.base_version_id) if run and run.base_version_id else None
        )
        activations = [
            (a, session.get(ModelVersion, a.previous_version_id) if a.previous_version_id else None)
            for a in model_activations(session, version.id)
        ]
        print_rows(
            ["", ""],
            [
                ("status", version.status.value),
                ("weights", version.uri),
                ("parent", parent.name if parent else None),
                ("preset", version.preset),
                ("created", _time(version.created_at)),
                ("last activated", _time(version.activated_at)),
                ("training run", f"{run.id} ({run.kind.value}, job {run.job_id})" if run else None),
            ],
            title=f"model version {version.name}",
        )
        if run is not None:
            _print_training_run(run, base.name if base else None)
        source, scores = _version_scores(version.metrics)
        if scores:
            print_rows(
                ["field", "precision", "recall", "F1", "ANLS", "support"],
                [
                    (
                        name,
                        *(rounded(s.get(k)) for k in ("precision", "recall", "f1", "anls")),
                        s.get("support"),
                    )
                    for name, s in scores.items()
                ],
                title=f"scores per field ({source})",
            )
        print_rows(
            ["when", "how", "by", "replacing", "why"],
            [
                (
                    _time(a.activated_at),
                    a.kind.value,
                    a.activated_by,
                    previous.name if previous else None,
                    a.reason,
                )
                for a, previous in activations
            ],
            title="made active",
        )
    return 0


def _print_training_run(run, base_name: str | None) -> None:
    metrics = run.metrics or {}
    print_rows(
        ["", ""],
        [
            ("kind", run.kind.value),
            ("status", run.status.value),
            ("base version", base_name),
            ("started", _time(run.started_at)),
            ("finished", _time(run.finished_at)),
            ("steps", metrics.get("steps")),
            ("train / holdout documents", f"{run.train_size} / {run.holdout_size}"),
        ],
        title=f"training run {run.id} (job {run.job_id})",
    )
    seen = metrics.get("labels")
    if seen:
        names = sorted({*seen.get("train", {}), *seen.get("holdout", {})})
        print_rows(
            ["field", "train", "holdout"],
            [
                (n, seen.get("train", {}).get(n, 0), seen.get("holdout", {}).get(n, 0))
                for n in names
            ],
            title=f"labels it saw (documents per field, stored before {_time(run.started_at)})",
        )


def _version_scores(metrics: dict) -> tuple[str, dict[str, dict]]:
    """(where from, {field: scores, ..., "overall": scores}) of a version's stored metrics: the
    holdout of the run that trained it, or the validation set of a checkpoint's metrics.json."""
    if isinstance(metrics.get("holdout"), dict):
        holdout = metrics["holdout"]
        return "its training run's holdout", {**holdout["fields"], "overall": holdout["overall"]}
    if isinstance(metrics.get("validation"), dict):
        where = metrics.get("evaluated_on") or "validation"
        return f"metrics.json, on its {where} set", metrics["validation"]
    return "", {}


def cmd_models_compare(args: argparse.Namespace) -> int:
    """Per-field scores of two versions on one holdout: the one a fine-tuning run scored them
    both on, or (none, or --evaluate) the holdout of the labels stored now."""
    from db.training_runs import stored_comparison
    from flows.finetune import comparison_rows

    with open_session() as session:
        for name in (args.a, args.b):
            version_named(session, name)
        run = None if args.evaluate else stored_comparison(session, args.a, args.b)
        if run is not None:
            metrics = run.metrics
            scores = {
                metrics["active_version"]: metrics["active_holdout"],
                metrics["new_version"]: metrics["new_holdout"],
            }
            source = (
                f"as training run {run.id} (finetune job {run.job_id}) scored them on its "
                f"holdout of {run.holdout_size} documents"
            )
    if run is None:
        from flows.deployments import start_api
        from flows.finetune import evaluate_versions

        start_api()
        with training_bar("evaluating"), flow_errors():
            result = evaluate_versions([args.a, args.b], fields=field_names(args.fields))
        scores = result["scores"]
        source = (
            f"evaluated now on the holdout of the labels stored now ({result['holdout_size']} "
            "documents)"
        )
    header, rows = comparison_rows({name: scores[name] for name in (args.a, args.b)})
    print_rows(header, rows, title=f"{args.a} vs {args.b}")
    print(source)
    return 0


def _unloadable(version) -> str | None:
    """Why the weights of `version` cannot be loaded for extraction, or None when they load.

    Loaded exactly as digitize will (`Extractor.from_pretrained` on the local copy); a version
    in the artifact bucket must also still have its files there, since every worker downloads
    it from there (this machine may hold a copy of objects deleted since)."""
    from docformer.checkpoints import REQUIRED_FILES
    from docformer.extraction import Extractor
    from flows.clients import object_store
    from flows.registry import local_model_dir

    if version.uri.startswith("s3://"):
        bucket, _, prefix = version.uri.removeprefix("s3://").partition("/")
        store = object_store(load_settings())
        missing = [
            name
            for name in REQUIRED_FILES
            if not store.exists(bucket, f"{prefix.rstrip('/')}/{name}")
        ]
        if missing:
            return f"{version.uri} lacks {', '.join(missing)}"
    try:
        Extractor.from_pretrained(local_model_dir(version.name, version.uri), device="cpu")
    except Exception as error:  # whatever stops it loading is the answer to give
        return f"its weights cannot be loaded: {str(error).rstrip('.')}"
    return None


def _write_session():
    from db.session import session_scope
    from flows.clients import sessions

    return session_scope(sessions(load_settings()))


def _who() -> str:
    """Who is changing the active version, as recorded: the login and the machine."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in containers without a passwd entry
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _activate(version, kind: str, reason: str | None, by: str) -> None:
    """Make `version` active after checking that its weights load; CommandError, and nothing
    changed, when they do not."""
    from db.model_versions import activate_model_version
    from db.models import ModelVersion

    problem = _unloadable(version)
    if problem:
        raise CommandError(f"cannot activate {version.name}: {problem}. Nothing was changed.")
    with _write_session() as session:
        previous_id = activate_model_version(session, version.id, by=by, kind=kind, reason=reason)
        previous = session.get(ModelVersion, previous_id) if previous_id else None
        replaced = f" (was {previous.name})" if previous else ""
    print(f"{version.name} is now the active model version{replaced}, by {by}.")
    print(
        "The next digitize extracts with it; documents already extracted keep their fields "
        "until `docflow run --reprocess` extracts them again."
    )


def cmd_models_activate(args: argparse.Namespace) -> int:
    from db.model_versions import active_model_version

    with open_session() as session:
        version = version_named(session, args.version)
        active = active_model_version(session)
        if active is not None and active.id == version.id:
            print(f"{version.name} is already the active model version; nothing changed.")
            return 0
    _activate(version, "activate", args.reason, args.by or _who())
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    from db.model_versions import active_model_version, rollback_target

    with open_session() as session:
        active = active_model_version(session)
        target = rollback_target(session)
        if target is None:
            what = f"no version was active before {active.name}" if active else "none is active"
            raise CommandError(f"nothing to roll back to: {what}")
    _activate(target, "rollback", args.reason, args.by or _who())
    return 0
