"""The `finetune` flow: a new model version from the labels in PostgreSQL, promoted only when it
beats the active one on the same holdout.

1. open a `jobs` row (kind finetune) and resolve the base version (default: the active one; a
   `pretrain` candidate can be named instead);
2. gather every labelled document as a training example (pages rendered again, OCR from the
   caches; labels of every source, reviews included) and split train/holdout by a hash of each
   document's sha256: deterministic, and a document never changes sides when others are added.
   Only documents whose labels name every field the run trains on are held out; one the hash
   holds out without that is left out of the run (`flows.promotion.fields_to_train`);
3. fine-tune from the base (early stopping watches the holdout, the best weights are kept);
4. evaluate the active and the new version on the same holdout, over the active version's
   whole field set plus the new one's (`flows.promotion`);
5. store the new weights in the artifact bucket and a `model_versions` row (candidate);
6. promote it when its holdout F1 beats the active version's by `promote_margin`, it reads
   every field the active version reads (unless `allow_fewer_fields`), and the holdout has at
   least `min_holdout` labelled documents for each field compared (`promotion_blockers`);
7. record a `training_runs` row (data sizes, the labels per field and per source, the
   documents left out of the holdout, both metrics, the loss curve) and publish the comparison
   as a markdown artifact.

While it trains, the run's progress artifact `finetune-progress` counts the steps done (the
Prefect UI shows it; `docflow finetune` draws its bar from it, or in this process from
`training_progress`). `evaluate_versions` scores any versions on the current labels' holdout
(`docflow models compare --evaluate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect import flow, get_run_logger, task

from flows.artifacts import Progress, markdown_table, publish_markdown
from flows.clients import sessions
from flows.jobs import finish_job, open_job
from flows.promotion import (
    compared_fields,
    evaluate_on_fields,
    fields_to_train,
    labelled_documents_per_field,
    model_fields,
    promotion_blockers,
)
from flows.registry import ModelRef, resolve_model
from flows.retries import TASK_OPTIONS
from flows.settings import get_settings
from flows.tasks_training import load_labelled_examples, store_model_version, training_folder


@task(name="split-holdout", **TASK_OPTIONS)
def split_holdout(
    examples: list[Any], holdout_fraction: float, seed: int, fields: list[str] | None = None
) -> tuple[list[Any], list[Any], list[Any]]:
    """(train, holdout, left out) by a hash of each document: one the hash holds out whose
    labels do not name every one of `fields` is left out (`split_examples_covering`)."""
    from docformer.training.data import split_examples_covering
    from flows.tasks_training import labelled_names

    if len(examples) < 2:
        raise ValueError(
            f"{len(examples)} labelled documents: fine-tuning needs at least 2 "
            "(import some with `docflow labels import DIR`)"
        )
    train_set, holdout, left_out = split_examples_covering(
        examples, holdout_fraction, seed, fields or [], labelled=labelled_names
    )
    if not train_set or not holdout:
        raise ValueError(
            f"{len(train_set)} documents to train on, {len(holdout)} to hold out and "
            f"{len(left_out)} left out, their labels not naming every field trained "
            f"({', '.join(fields or [])}): a run needs both sides (review whole documents)"
        )
    return train_set, holdout, left_out


# -- progress -----------------------------------------------------------------------------------

# Called with (stage, steps done, steps in all) as a training flow of this process moves on;
# the numbers are None before training starts. See `training_progress`.
ProgressListener = Callable[[str, int | None, int | None], None]
_listeners: list[ProgressListener] = []


@contextmanager
def training_progress(listener: ProgressListener) -> Iterator[None]:
    """Within the block, `listener` hears the stages and steps of the training flows run in this
    process (how `docflow finetune` and `docflow pretrain` draw their bar on the embedded
    default). Through a server, the same steps arrive as the run's progress artifact."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def report_stage(stage: str) -> None:
    for listener in list(_listeners):
        listener(stage, None, None)


class StepProgress:
    """Training steps done out of the run's total: the run's progress artifact `key`, created at
    the first step (the total is known from then on), and the listeners of this process."""

    def __init__(self, key: str, stage: str):
        self.key, self.stage = key, stage
        self._artifact: Progress | None = None

    def update(self, step: int, total: int) -> None:
        total = max(total, step)
        if self._artifact is None:
            self._artifact = Progress(total, self.key, self.stage)
        self._artifact.total = total
        self._artifact.advance(step - self._artifact.done)
        for listener in list(_listeners):
            listener(self.stage, step, total)


# -- one run at a time ---------------------------------------------------------------------------


class FinetuneAlreadyRunning(RuntimeError):
    """Another fine-tuning run holds the slot; this one did not start."""


@contextmanager
def finetune_slot() -> Iterator[None]:
    """Hold the fine-tuning slot for the block: PostgreSQL's session-level advisory lock
    `FINETUNE_LOCK_ID`, on a connection of its own kept open until the block ends.

    Why a database lock and not a Prefect concurrency limit: it holds for every way a run
    starts (a deployment on a worker, `docflow finetune --local`, a test), a limit that was
    never created cannot leave it silently unlimited, and PostgreSQL lets go of it the moment
    the process holding it dies, so a killed run never keeps the slot. That also tells dead
    runs from live ones: once this process holds the lock, every fine-tuning job still
    'running' has lost its process, and is marked crashed (its training run failed) here, the
    way the next digitize run marks a killed one.

    A second run refuses at once (`FinetuneAlreadyRunning`) rather than queueing: two runs
    would train on the same labels and compare against the same active version.
    """
    from sqlalchemy import func, select
    from sqlalchemy.pool import NullPool

    from db.models import JobKind
    from db.session import make_engine, session_scope
    from db.training_runs import FINETUNE_LOCK_ID, mark_crashed_training_jobs
    from flows.settings import reveal

    engine = make_engine(reveal(get_settings().database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            lock = select(func.pg_try_advisory_lock(FINETUNE_LOCK_ID))
            if not connection.execute(lock).scalar():
                raise FinetuneAlreadyRunning(
                    "another fine-tuning run is in progress (`docflow jobs` shows it); "
                    "one runs at a time"
                )
            with session_scope(sessions()) as session:
                crashed = mark_crashed_training_jobs(
                    session,
                    JobKind.FINETUNE,
                    error="no sign of life: the process running it was lost (a live "
                    "fine-tuning run holds the fine-tuning lock, and it was free)",
                )
            if crashed:
                get_run_logger().warning("marked fine-tuning jobs %s crashed", crashed)
            yield
            # Closing the connection below releases the lock with it.
    finally:
        engine.dispose()


# -- the tasks ------------------------------------------------------------------------------------


@task(name="train", **TASK_OPTIONS)
def train(base: ModelRef, train_set: list, holdout: list, fields, options: dict[str, Any]):
    from docformer.training.finetune import finetune as finetune_model

    progress = StepProgress("finetune-progress", "training")

    def log(record: dict[str, Any]) -> None:
        get_run_logger().info("%s", record)
        if "total_steps" in record:  # a step record (not a message or an evaluation)
            progress.update(record["step"], record["total_steps"])

    out_dir = training_folder()
    return finetune_model(
        base.local_dir, train_set, holdout, out_dir, fields=fields, log=log, **options
    )


@task(name="evaluate", **TASK_OPTIONS)
def evaluate(model_dir: str, holdout: list, fields, device: str) -> dict[str, Any]:
    """Scores on the holdout over `fields` (default: the labels' fields); a field the model
    cannot read scores zero, a field a document's labels do not name is not judged there."""
    from docformer.training.finetune import default_fields

    return evaluate_on_fields(model_dir, holdout, fields or default_fields(holdout), device)


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
    min_holdout: int | None = None,
    allow_fewer_fields: bool = False,
) -> dict[str, Any]:
    """Fine-tune a new version on the labelled documents; promote it only when its holdout F1
    exceeds the active version's by more than `promote_margin` (0.01 = one F1 point), over the
    active version's whole field set, with at least `min_holdout` labelled holdout documents
    per field compared (default: the setting `finetune_min_holdout`), and, unless
    `allow_fewer_fields`, only when it reads every field the active version reads.

    One fine-tuning run at a time (`finetune_slot`); another one started meanwhile fails at
    once with `FinetuneAlreadyRunning`."""
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
        "min_holdout": min_holdout,
        "allow_fewer_fields": allow_fewer_fields,
    }
    if min_holdout is None:
        min_holdout = settings.finetune_min_holdout
    with finetune_slot():
        return _finetune(parameters, min_holdout, device)


def _finetune(parameters: dict[str, Any], min_holdout: int, device: str) -> dict[str, Any]:
    """The body of `finetune`, run while this process holds the fine-tuning slot."""
    from db.model_versions import activate_model_version, active_model_version, lock_model_versions
    from db.models import ActivationKind, TrainingStatus
    from db.session import session_scope
    from db.training_runs import finish_training_run, start_training_run
    from flows.tasks_training import label_sources

    fields, seed = parameters["fields"], parameters["seed"]
    promote_margin = parameters["promote_margin"]
    allow_fewer_fields = parameters["allow_fewer_fields"]
    job_id = open_job("finetune", parameters)
    run_id = None
    try:
        base = resolve_model(parameters["base_model_version"])
        active = resolve_model(None)
        report_stage("loading the labelled documents")
        examples = load_labelled_examples()
        required = fields_to_train(base.local_dir, fields, examples)
        train_set, holdout, left_out = split_holdout(
            examples, parameters["holdout_fraction"], seed, required
        )
        if left_out:
            message = "%d documents left out of the holdout: labels not naming all of %s"
            get_run_logger().info(message, len(left_out), ", ".join(required))
        with session_scope(sessions()) as session:
            run_id = start_training_run(
                session, "finetune", base.id, job_id, parameters, len(train_set), len(holdout)
            )
        report_stage("training")
        result = train(
            base,
            train_set,
            holdout,
            fields,
            {
                name: parameters[name]
                for name in ("epochs", "max_steps", "batch_size", "lr", "patience", "seed")
            }
            | {"device": device},
        )
        # Production extracts the promoted version's fields: compare on all the active reads.
        active_fields = model_fields(active.local_dir)
        new_fields = model_fields(result.out_dir)
        compared = compared_fields(active_fields, new_fields)
        report_stage("evaluating both versions on the holdout")
        active_scores = evaluate(active.local_dir, holdout, compared, device)
        new_scores = evaluate(str(result.out_dir), holdout, compared, device)
        active_f1 = active_scores["overall"]["f1"]
        new_f1 = new_scores["overall"]["f1"]
        version = store_model_version(
            str(result.out_dir),
            "finetune",
            job_id,
            base,
            {"holdout": new_scores, "f1": new_f1, "train_size": len(train_set)},
        )
        with session_scope(sessions()) as session:
            comparison = {
                "base_version": base.name,
                "active_version": active.name,
                "active_f1": active_f1,
                "new_version": version.name,
                "new_f1": new_f1,
                "promote_margin": promote_margin,
                "active_fields": active_fields,
                "new_fields": new_fields,
                "compared_fields": compared,
                "fields_dropped": [name for name in active_fields if name not in new_fields],
                "allow_fewer_fields": allow_fewer_fields,
                "min_holdout": min_holdout,
                "holdout_labels": labelled_documents_per_field(holdout, compared),
                "active_changed": False,
                "active_holdout": active_scores,
                "new_holdout": new_scores,
                "labels": {"train": label_counts(train_set), "holdout": label_counts(holdout)},
                "label_sources": label_sources([*train_set, *holdout]),
                "fields_trained": required,
                "left_out_of_holdout": len(left_out),
                "best_f1": result.best_f1,
                "steps": result.steps,
                "wall_seconds": result.wall_seconds,
            }
            promoted = not promotion_blockers(comparison)
            comparison["promoted"] = promoted
            if promoted:
                # Promote only if the version compared against is still the active one. The
                # lock comes first: read before it, the active version could change (another
                # promotion, an activation by hand) between the reading and the activating.
                lock_model_versions(session)
                current = active_model_version(session)
                promoted = current is None or current.id == active.id
                comparison["promoted"] = promoted
                comparison["active_changed"] = not promoted
                if promoted:
                    activate_model_version(
                        session,
                        version.id,
                        by=f"finetune job {job_id}",
                        kind=ActivationKind.PROMOTE,
                        reason=promotion_reason(comparison),
                    )
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
    get_run_logger().info("new version %s: %s", version.name, promotion_reason(comparison))
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


def label_counts(examples: list[Any]) -> dict[str, int]:
    """How many of `examples` carry a label for each field."""
    counts: dict[str, int] = {}
    for example in examples:
        for name in example.fields:
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def promotion_reason(comparison: dict[str, Any]) -> str:
    """Why a fine-tuning run promoted its version or kept it as a candidate, in one sentence."""
    new_f1, active_f1 = comparison["new_f1"], comparison["active_f1"]
    margin, active = comparison["promote_margin"], comparison["active_version"]
    scores = f"holdout F1 {new_f1:.4f} against {active_f1:.4f} for {active}"
    if comparison["promoted"]:
        dropped = comparison.get("fields_dropped")
        allowed = f", dropping {', '.join(dropped)} as allowed" if dropped else ""
        return f"promoted: {scores}, better by more than the margin {margin}{allowed}"
    if comparison.get("active_changed"):
        return (
            f"kept as a candidate: {scores}, but another version became active while it "
            "trained, so the comparison no longer holds"
        )
    return f"kept as a candidate: {scores}, " + "; ".join(promotion_blockers(comparison))


def comparison_rows(
    scores_by_version: dict[str, dict[str, Any]],
) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of the per-field table: F1 and ANLS of each version, side by side, on the
    one holdout all were scored on; one row per field, then "overall". The versions are given
    as {column label: evaluation result ({"fields": {...}, "overall": {...}})}."""
    names = sorted({name for result in scores_by_version.values() for name in result["fields"]})

    def scores(result: dict[str, Any], name: str) -> dict[str, Any]:
        return result["overall"] if name == "overall" else result["fields"].get(name, {})

    labels = list(scores_by_version)
    header = ["field", *(f"{label} F1" for label in labels)]
    header += [f"{label} ANLS" for label in labels]
    rows = [
        [name]
        + [round(scores(result, name).get("f1", 0.0), 4) for result in scores_by_version.values()]
        + [round(scores(result, name).get("anls", 0.0), 4) for result in scores_by_version.values()]
        for name in [*names, "overall"]
    ]
    return header, rows


def finetune_table(comparison: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The comparison a fine-tuning run recorded, as `comparison_rows`: the active version and
    the new one."""
    return comparison_rows(
        {"active": comparison["active_holdout"], "new": comparison["new_holdout"]}
    )


def comparison_markdown(comparison: dict[str, Any], train_size: int, holdout_size: int) -> str:
    """Per field and overall: the active and the new version's holdout scores, side by side."""
    verdict = "**promoted**" if comparison["promoted"] else "kept as a candidate"
    left_out = comparison.get("left_out_of_holdout")
    left = f" ({left_out} left out: labels not naming every field trained)" if left_out else ""
    return (
        f"# finetune: {comparison['new_version']} {verdict}\n\n"
        f"Trained on {train_size} documents, compared on {holdout_size} held out{left}; promotion "
        f"needs an F1 above the active version's ({comparison['active_version']}) by more than "
        f"{comparison['promote_margin']}. {_sentence(promotion_reason(comparison))}\n\n"
        + markdown_table(*finetune_table(comparison))
        + "\n"
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


@flow(name="evaluate-versions")
def evaluate_versions(
    versions: list[str],
    holdout_fraction: float = 0.2,
    seed: int = 0,
    fields: list[str] | None = None,
) -> dict[str, Any]:
    """Score model versions (names or folders) on the holdout of the labels stored now: the
    documents the next fine-tuning run with the same `holdout_fraction` and `seed` holds out,
    and those it leaves out for labels not naming every field it trains (scored on the fields
    they name). The split is by a hash of each document, so a document never changes sides as
    labels are added, and a version the finetune flow trained is not scored on documents it
    learned from.
    Returns {"holdout_size": n, "scores": {version name: evaluation result}}."""
    refs = [resolve_model(version) for version in versions]
    report_stage("loading the labelled documents")
    examples = load_labelled_examples()
    _, holdout, _ = split_holdout(examples, holdout_fraction, seed)
    report_stage("evaluating on the holdout")
    device = get_settings().device
    scores = {ref.name: evaluate(ref.local_dir, holdout, fields, device) for ref in refs}
    return {"holdout_size": len(holdout), "scores": scores}


def _fail(job_id: int, run_id: int | None, error: BaseException) -> None:
    from db.jobs import close_job
    from db.models import JobStatus, TrainingStatus
    from db.session import session_scope
    from db.training_runs import finish_training_run

    message = f"{type(error).__name__}: {error}"[:2000]
    try:
        with session_scope(sessions()) as session:
            if run_id is not None:
                finish_training_run(session, run_id, TrainingStatus.FAILED, error=message)
            close_job(session, job_id, JobStatus.FAILED, error=message)
    except Exception:
        get_run_logger().exception("could not record the failure of job %d", job_id)
