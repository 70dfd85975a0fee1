"""The `finetune` flow: a new model version from the labels in PostgreSQL, promoted only when it
beats the active one on the same holdout.

1. open a `jobs` row (kind finetune) and resolve the base version (default: the active one; a
   `pretrain` candidate can be named instead);
2. gather every labelled document as a training example (pages rendered again, OCR from the
   caches) and split train/holdout by a hash of each document's sha256: deterministic, and a
   document never changes sides when others are added;
3. fine-tune from the base (early stopping watches the holdout, the best weights are kept);
4. evaluate the active and the new version on the same holdout;
5. store the new weights in the artifact bucket and a `model_versions` row (candidate);
6. promote it when its holdout F1 beats the active version's by `promote_margin`;
7. record a `training_runs` row (data sizes, both metrics, the loss curve) and publish the
   comparison as a markdown artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from flows.artifacts import markdown_table, publish_markdown
from flows.settings import get_settings
from flows.tasks import TASK_OPTIONS, ModelRef, finish_job, open_job, resolve_model, sessions
from flows.tasks_training import load_labelled_examples, store_model_version, training_folder


@task(name="split-holdout", **TASK_OPTIONS)
def split_holdout(examples: list[Any], holdout_fraction: float, seed: int):
    from docformer.training.data import split_examples

    if len(examples) < 2:
        raise ValueError(
            f"{len(examples)} labelled documents: fine-tuning needs at least 2 "
            "(import some with `docflow labels import DIR`)"
        )
    return split_examples(examples, holdout_fraction, seed)


@task(name="train", **TASK_OPTIONS)
def train(base: ModelRef, train_set: list, holdout: list, fields, options: dict[str, Any]):
    from docformer.training.finetune import finetune as finetune_model

    out_dir = training_folder()
    return finetune_model(
        base.local_dir, train_set, holdout, out_dir, fields=fields, log=_log_record, **options
    )


def _log_record(record: dict[str, Any]) -> None:
    get_run_logger().info("%s", record)


@task(name="evaluate", **TASK_OPTIONS)
def evaluate(model_dir: str, holdout: list, fields, device: str) -> dict[str, Any]:
    from docformer.training.finetune import evaluate_model

    return evaluate_model(model_dir, holdout, fields, device=device)


@flow(name="finetune")
def finetune(
    base_model_version: str | None = None,
    holdout_fraction: float = 0.2,
    promote_margin: float = 0.01,
    fields: list[str] | None = None,
    epochs: int = 10,
    max_steps: int | None = None,
    batch_size: int = 8,
    lr: float = 5e-4,
    patience: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Fine-tune a new version on the labelled documents; promote it only when its holdout F1
    exceeds the active version's by more than `promote_margin` (0.01 = one F1 point)."""
    from db.models import TrainingStatus
    from db.queries import (
        activate_model_version,
        active_model_version,
        finish_training_run,
        start_training_run,
    )
    from db.session import session_scope

    settings = get_settings()
    device = settings.device
    parameters = {
        "base_model_version": base_model_version,
        "holdout_fraction": holdout_fraction,
        "promote_margin": promote_margin,
        "fields": fields,
        "epochs": epochs,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "lr": lr,
        "patience": patience,
        "seed": seed,
    }
    job_id = open_job("finetune", parameters)
    run_id = None
    try:
        base = resolve_model(base_model_version)
        active = resolve_model(None)
        examples = load_labelled_examples()
        train_set, holdout = split_holdout(examples, holdout_fraction, seed)
        with session_scope(sessions()) as session:
            run_id = start_training_run(
                session, "finetune", base.id, job_id, parameters, len(train_set), len(holdout)
            )
        result = train(
            base,
            train_set,
            holdout,
            fields,
            dict(
                epochs=epochs,
                max_steps=max_steps,
                batch_size=batch_size,
                lr=lr,
                patience=patience,
                seed=seed,
                device=device,
            ),
        )
        fields_used = result.metrics.get("fields") or fields
        active_scores = evaluate(active.local_dir, holdout, fields_used, device)
        new_scores = evaluate(str(result.out_dir), holdout, fields_used, device)
        active_f1 = active_scores["overall"]["f1"]
        new_f1 = new_scores["overall"]["f1"]
        promoted = new_f1 > active_f1 + promote_margin
        version = store_model_version(
            str(result.out_dir),
            "finetune",
            job_id,
            base,
            {"holdout": new_scores, "f1": new_f1, "train_size": len(train_set)},
        )
        with session_scope(sessions()) as session:
            if promoted:
                # Promote only if the version compared against is still the active one.
                current = active_model_version(session)
                promoted = current is None or current.id == active.id
                if promoted:
                    activate_model_version(session, version.id)
            comparison = {
                "active_version": active.name,
                "active_f1": active_f1,
                "new_version": version.name,
                "new_f1": new_f1,
                "promote_margin": promote_margin,
                "promoted": promoted,
                "active_holdout": active_scores,
                "new_holdout": new_scores,
                "best_f1": result.best_f1,
                "steps": result.steps,
                "wall_seconds": result.wall_seconds,
            }
            finish_training_run(
                session,
                run_id,
                TrainingStatus.COMPLETED,
                result_version_id=version.id,
                metrics=comparison,
                loss_curve=result.loss_curve,
            )
        summary = finish_job(job_id, "completed")
    except BaseException as error:
        _fail(job_id, run_id, error)
        raise

    publish_markdown(
        comparison_markdown(comparison, len(train_set), len(holdout)),
        key="finetune-comparison",
        description=f"finetune job {job_id}",
    )
    get_run_logger().info(
        "new version %s: holdout F1 %.4f vs active %s %.4f: %s",
        version.name,
        new_f1,
        active.name,
        active_f1,
        "promoted" if promoted else "kept as candidate",
    )
    return {
        "job_id": summary.job_id,
        "training_run_id": run_id,
        "version": version.name,
        "active_version": active.name,
        "new_f1": new_f1,
        "active_f1": active_f1,
        "promoted": promoted,
        "train_size": len(train_set),
        "holdout_size": len(holdout),
    }


def comparison_markdown(comparison: dict[str, Any], train_size: int, holdout_size: int) -> str:
    """Per field and overall: the active and the new version's holdout scores, side by side."""
    active, new = comparison["active_holdout"], comparison["new_holdout"]
    names = [*sorted(new.get("fields", {})), "overall"]

    def scores(result: dict[str, Any], name: str) -> dict[str, Any]:
        return result["overall"] if name == "overall" else result.get("fields", {}).get(name, {})

    rows = [
        [
            name,
            round(scores(active, name).get("f1", 0.0), 4),
            round(scores(new, name).get("f1", 0.0), 4),
            round(scores(active, name).get("anls", 0.0), 4),
            round(scores(new, name).get("anls", 0.0), 4),
        ]
        for name in names
    ]
    verdict = "**promoted**" if comparison["promoted"] else "kept as a candidate"
    return (
        f"# finetune: {comparison['new_version']} {verdict}\n\n"
        f"Trained on {train_size} documents, compared on {holdout_size} held out; promotion "
        f"needs an F1 above the active version's ({comparison['active_version']}) by more than "
        f"{comparison['promote_margin']}.\n\n"
        + markdown_table(["field", "active F1", "new F1", "active ANLS", "new ANLS"], rows)
        + "\n"
    )


def _fail(job_id: int, run_id: int | None, error: BaseException) -> None:
    from db.models import JobStatus, TrainingStatus
    from db.queries import close_job, finish_training_run
    from db.session import session_scope

    message = f"{type(error).__name__}: {error}"[:2000]
    try:
        with session_scope(sessions()) as session:
            if run_id is not None:
                finish_training_run(session, run_id, TrainingStatus.FAILED, error=message)
            close_job(session, job_id, JobStatus.FAILED, error=message)
    except Exception:
        get_run_logger().exception("could not record the failure of job %d", job_id)
