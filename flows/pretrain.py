"""The `pretrain` flow: continue DocFormerv2's three self-supervised tasks (masked tokens,
token-to-line, token-to-grid) on the pages digitize has already OCR'd from the user's own
backlog. No labels are needed. The result is registered as a candidate version; name it as the
`base_model_version` of the next `finetune` to fine-tune from it (`docflow finetune --base`).
While it trains, the run's progress artifact `pretrain-progress` counts the steps done.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from flows.artifacts import markdown_table, publish_markdown
from flows.clients import sessions
from flows.finetune import StepProgress, report_stage
from flows.jobs import finish_job, open_job
from flows.registry import ModelRef, resolve_model
from flows.retries import TASK_OPTIONS
from flows.settings import get_settings
from flows.tasks_training import load_backlog_pages, store_model_version, training_folder


@task(name="pretrain-model", **TASK_OPTIONS)
def pretrain_model(base: ModelRef, pages: list, options: dict[str, Any]):
    from docformer.training.pretrain import pretrain as pretrain_pages

    progress = StepProgress("pretrain-progress", "training")

    def log(record: dict[str, Any]) -> None:
        get_run_logger().info("%s", record)
        if isinstance(record.get("step"), int):
            progress.update(record["step"], options["steps"])

    return pretrain_pages(
        pages, training_folder(), init_model_dir=base.local_dir, log=log, **options
    )


@flow(name="pretrain")
def pretrain(
    base_model_version: str | None = None,
    steps: int = 1000,
    batch_size: int = 8,
    lr: float = 1e-4,
    max_pages: int = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """Continue pre-training the base version (default: the active one) on up to `max_pages`
    cached pages of the backlog; register the result as a candidate version."""
    from db.jobs import add_job_counts
    from db.models import TrainingStatus
    from db.session import session_scope
    from db.training_runs import finish_training_run, start_training_run
    from flows.finetune import _fail

    parameters = {
        "base_model_version": base_model_version,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "max_pages": max_pages,
        "seed": seed,
    }
    job_id = open_job("pretrain", parameters)
    run_id = None
    try:
        base = resolve_model(base_model_version)
        report_stage("loading the digitized pages")
        pages, documents = load_backlog_pages(max_pages)
        if not pages:
            raise ValueError("no digitized pages to pre-train on: run digitize first")
        with session_scope(sessions()) as session:
            run_id = start_training_run(
                session, "pretrain", base.id, job_id, parameters, train_size=len(pages)
            )
            add_job_counts(session, job_id, documents_seen=documents, pages=len(pages))
        report_stage("training")
        result = pretrain_model(
            base,
            pages,
            dict(
                steps=steps,
                batch_size=batch_size,
                lr=lr,
                warmup=max(1, steps // 10),
                seed=seed,
                device=get_settings().device,
            ),
        )
        metrics = {
            "final_losses": result.final_losses,
            "steps": result.steps,
            "pages": len(pages),
            "documents": documents,
            "wall_seconds": result.wall_seconds,
        }
        version = store_model_version(str(result.out_dir), "pretrain", job_id, base, metrics)
        with session_scope(sessions()) as session:
            finish_training_run(
                session,
                run_id,
                TrainingStatus.COMPLETED,
                result_version_id=version.id,
                metrics=metrics,
                loss_curve=result.loss_curve,
            )
        finish_job(job_id, "completed")
    except BaseException as error:
        _fail(job_id, run_id, error)
        raise

    losses = result.final_losses
    publish_markdown(
        f"# pretrain: candidate {version.name}\n\nFrom {base.name}, {result.steps} steps on "
        f"{len(pages)} pages of {documents} documents. Fine-tune from it with "
        f"`base_model_version={version.name!r}`.\n\n"
        + markdown_table(list(losses), [[round(v, 4) for v in losses.values()]])
        + "\n",
        key="pretrain-summary",
        description=f"pretrain job {job_id}",
    )
    return {
        "job_id": job_id,
        "training_run_id": run_id,
        "version": version.name,
        "base_version": base.name,
        "pages": len(pages),
        "documents": documents,
        "steps": result.steps,
        "final_losses": losses,
    }
