"""`docflow finetune` and `docflow pretrain`: a training flow run here under a progress bar, or
through its deployment on a Prefect server (followed with `--wait`), then what it recorded."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from flows.cli.common import (
    CommandError,
    api_url,
    field_names,
    open_session,
    print_rows,
    progress_bar,
    rounded,
    version_named,
)

# How often `--wait` asks a Prefect server how a run is doing.
POLL_SECONDS = 2.0


def training_bar(title: str):
    """A progress bar fed by the training flows of this process (`training_progress`)."""
    import contextlib

    from flows.finetune import training_progress

    @contextlib.contextmanager
    def bar_context():
        with progress_bar() as progress:
            bar = progress.add_task(title, total=None)

            def listener(stage: str, done: int | None, total: int | None) -> None:
                progress.update(bar, description=f"{title}: {stage}")
                if total is not None:
                    progress.update(bar, completed=done, total=total)

            with training_progress(listener):
                yield

    return bar_context()


def _run_deployment(name: str, parameters: dict, wait: bool, progress_key: str):
    """Start `name` on the server in PREFECT_API_URL. With `wait`, follow it to its end
    (`follow_flow_run`) and return the finished flow run."""
    from prefect.deployments import run_deployment

    flow_run = run_deployment(name, parameters=parameters, timeout=0)
    print(f"flow run {flow_run.name} ({flow_run.id}): {flow_run.state.name}")
    return follow_flow_run(flow_run.id, progress_key) if wait else None


def follow_flow_run(flow_run_id, progress_key: str):
    """Wait for a flow run to end, its progress artifact `progress_key` drawn as a bar; returns
    the finished flow run."""
    import time

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client, progress_bar() as progress:
        bar = None
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            if bar is None:
                bar = progress.add_task(flow_run.name, total=100)
            state = flow_run.state.name.lower()
            percent = progress_percent(client, flow_run_id, progress_key)
            progress.update(bar, description=f"{flow_run.name}: {state}", completed=percent)
            if flow_run.state.is_final():
                return flow_run
            time.sleep(POLL_SECONDS)


def progress_percent(client, flow_run_id, key: str) -> float:
    """How far the flow run's progress artifact `key` has got, in percent (0 before it
    exists)."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            key=ArtifactFilterKey(any_=[key]),
        ),
        limit=1,
    )
    return float(found[0].data) if found else 0.0


def finished_training_run(flow_run) -> int:
    """The id of the training run a finished flow run recorded; CommandError when the run
    failed."""
    from db.jobs import job_of_flow_run
    from db.training_runs import training_run_of_flow_run

    with open_session() as session:
        run = training_run_of_flow_run(session, flow_run.id)
        job = job_of_flow_run(session, flow_run.id)
        if run is None or not flow_run.state.is_completed():
            reason = (job.error if job is not None else None) or flow_run.state.message
            raise CommandError(f"flow run {flow_run.name} {flow_run.state.name}: {reason}")
        return run.id


def _check_base(base: str | None) -> None:
    """A --base that names no registered version (nor a model folder) is refused here, before a
    run starts only to fail on it."""
    from pathlib import Path

    if base is not None and not Path(base).is_dir():
        with open_session() as session:
            version_named(session, base)


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune now: in this process on the embedded default, or through the deployment when
    PREFECT_API_URL names a server; then the comparison the run recorded."""
    parameters = {
        "base_model_version": args.base,
        "fields": field_names(args.fields),
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "promote_margin": args.promote_margin,
        "min_holdout": args.min_holdout,
        "allow_fewer_fields": args.allow_fewer_fields or None,
    }
    from flows.finetune import finetune

    return _run_training(
        args, finetune, parameters, "finetune-progress", "fine-tuning", print_finetune_run
    )


def _run_training(
    args: argparse.Namespace,
    training_flow,
    parameters: dict,
    progress_key: str,
    title: str,
    print_run: Callable[[int], None],
) -> int:
    """Runs a training flow (fine-tuning or pre-training) with the given parameters (None
    values left to the flow's defaults): through `args.deployment` when PREFECT_API_URL names a
    server (unless `--local`), else in this process under a progress bar titled `title`; then
    what it recorded, printed by `print_run`. `progress_key` names the flow's progress
    artifact, which the bar follows on a server."""
    parameters = {k: v for k, v in parameters.items() if v is not None}
    _check_base(args.base)
    if api_url() and not args.local:
        flow_run = _run_deployment(args.deployment, parameters, args.wait, progress_key)
        if flow_run is not None:
            print_run(finished_training_run(flow_run))
        return 0
    from flows.deployments import start_api

    start_api()
    with training_bar(title), flow_errors():
        result = training_flow(**parameters)
    print_run(result["training_run_id"])
    return 0


def print_finetune_run(run_id: int) -> None:
    """What a fine-tuning run recorded: the active and the new version's scores per field on
    its holdout, and whether the new one was promoted, and why (the weekly run's table)."""
    from db.models import TrainingRun
    from flows.finetune import finetune_table, promotion_reason

    with open_session() as session:
        run = session.get(TrainingRun, run_id)
        comparison, job_id = run.metrics, run.job_id
        sizes = run.train_size, run.holdout_size
    verdict = "promoted" if comparison["promoted"] else "kept as a candidate"
    print_rows(
        *finetune_table(comparison),
        title=f"finetune job {job_id}: {comparison['new_version']} {verdict}",
    )
    print(
        f"active: {comparison['active_version']}, new: {comparison['new_version']} "
        f"(from {comparison.get('base_version', comparison['active_version'])}); trained on "
        f"{sizes[0]} documents, compared on the same {sizes[1]} held out"
    )
    print(promotion_reason(comparison))


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Continue pre-training on the documents already digitized: in this process, or through
    the deployment when PREFECT_API_URL names a server; then the candidate it registered."""
    parameters = {
        "base_model_version": args.base,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "max_pages": args.max_pages,
    }
    from flows.pretrain import pretrain

    return _run_training(
        args, pretrain, parameters, "pretrain-progress", "pre-training", print_pretrain_run
    )


def print_pretrain_run(run_id: int) -> None:
    from db.models import ModelVersion, TrainingRun

    with open_session() as session:
        run = session.get(TrainingRun, run_id)
        version = session.get(ModelVersion, run.result_version_id)
        base = session.get(ModelVersion, run.base_version_id) if run.base_version_id else None
        metrics, job_id, name = run.metrics, run.job_id, version.name
        base_name = base.name if base else "?"
    losses = metrics.get("final_losses") or {}
    print_rows(
        ["steps", "pages", "documents", *losses],
        [
            (
                metrics["steps"],
                metrics["pages"],
                metrics["documents"],
                *map(rounded, losses.values()),
            )
        ],
        title=f"pretrain job {job_id}: candidate {name} (from {base_name})",
    )
    print(f"fine-tune from it: docflow finetune --base {name}")


def flow_errors():
    """Errors a training flow of this process raises for its input (no such version, too few
    labels, nothing digitized yet, a fine-tuning run already in progress) become a one-line
    message; Prefect has logged the rest."""
    import contextlib

    from flows.finetune import FinetuneAlreadyRunning

    @contextlib.contextmanager
    def translate():
        try:
            yield
        except (LookupError, ValueError, FinetuneAlreadyRunning) as error:
            raise CommandError(str(error.args[0]) if error.args else repr(error)) from error

    return translate()
