"""The `docflow` command.

One function per subcommand (`cmd_<name>`), registered in `build_parser()`. Every import that
costs time (Prefect, SQLAlchemy, minio, torch) happens inside the subcommand that needs it, so
`docflow --help` stays instant. To add a subcommand: write `cmd_x(args) -> int`, add a parser
for it in `build_parser()` with `set_defaults(handler=cmd_x)`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def cmd_up(args: argparse.Namespace) -> int:
    from flows import provision

    provision.up(_settings())
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from embedded.control import stop

    stop(_settings())
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from flows import provision

    provision.prepare(_settings())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from flows import provision

    checks = provision.status(_settings())
    width = max(len(c.name) for c in checks)
    for check in checks:
        mark = "ok  " if check.answers else "DOWN"
        print(f"{mark} {check.name:<{width}}  {check.endpoint}  ({check.detail})")
    return 0 if all(c.answers for c in checks) else 1


def cmd_db(args: argparse.Namespace) -> int:
    from db import migrate

    url = _settings().database_url.get_secret_value()
    if args.db_command == "upgrade":
        migrate.upgrade(url, args.revision)
    elif args.db_command == "downgrade":
        migrate.downgrade(url, args.revision)
    else:
        print(migrate.current(url) or "(empty database: no revision applied)")
    return 0


# -- documents in, digitize, results out --------------------------------------------------------


UPLOAD_EVENT = "docflow.document.uploaded"


def emit_upload_event(bucket: str, keys: list[str]):
    """Tell Prefect that `keys` arrived in `bucket`: the `digitize-on-upload` deployment's
    trigger starts a run for exactly those keys. Any client may emit the same event: name
    `docflow.document.uploaded`, resource id `docflow.inbox.<bucket>`, payload
    {"bucket": ..., "keys": [...]}."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    event = emit_event(
        event=UPLOAD_EVENT,
        resource={
            "prefect.resource.id": f"docflow.inbox.{bucket}",
            "prefect.resource.name": bucket,
        },
        payload={"bucket": bucket, "keys": keys},
    )
    EventsWorker.drain_all()  # events are sent in the background; this process ends next
    return event


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(),
    )  # fmt: skip


def cmd_upload(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flows.clients import object_store

    settings = _settings()
    store = object_store(settings)
    store.ensure_bucket(settings.inbox_bucket)
    keys = []
    with _progress() as progress:
        bar = progress.add_task("uploading", total=len(args.files))
        for path in map(Path, args.files):
            key = f"{settings.inbox_prefix}{args.prefix}{path.name}"
            store.put_file(settings.inbox_bucket, key, path)
            keys.append(key)
            progress.advance(bar)
    for key in keys:
        print(f"s3://{settings.inbox_bucket}/{key}")
    if not args.no_event:
        event = emit_upload_event(settings.inbox_bucket, keys)
        if event is None:
            print("no event sent: Prefect events are turned off here", file=sys.stderr)
        else:
            print(f"event {UPLOAD_EVENT} {event.id}")
    return 0


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def cmd_run(args: argparse.Namespace) -> int:
    parameters = {
        "prefix": args.prefix,
        "bucket": args.bucket,
        "limit": args.limit,
        "model_version": args.model,
        "chunk_size": args.chunk_size,
        "reprocess": args.reprocess,
        "modified_since": args.modified_since,
    }
    parameters = {k: v for k, v in parameters.items() if v not in (None, False)}
    if _api_url() and not args.local:
        from prefect.deployments import run_deployment

        flow_run = run_deployment(
            args.deployment, parameters=parameters, timeout=None if args.wait else 0
        )
        print(f"flow run {flow_run.name} ({flow_run.id}): {flow_run.state.name}")
        if args.wait:
            summary = _job_of_flow_run(flow_run.id)
            if summary:
                print_summary(summary)
            return 0 if flow_run.state.is_completed() else 1
        return 0
    # The embedded default: the flow runs here, on the ephemeral API.
    from flows.deployments import ensure_concurrency_limits, start_api
    from flows.digitize import digitize

    start_api()
    ensure_concurrency_limits()
    print_summary(digitize(**parameters))
    return 0


def _job_of_flow_run(flow_run_id) -> dict | None:
    from db.jobs import job_of_flow_run
    from flows.jobs import JobSummary

    with _session() as session:
        job = job_of_flow_run(session, flow_run_id)
        return None if job is None else JobSummary.of(job).to_dict()


def print_summary(summary: dict) -> None:
    """The job summary a person reads after a run."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"digitize job {summary['job_id']}: {summary['status']}")
    for column in ("documents", "extracted", "failed", "pages", "pages/min", "seconds"):
        table.add_column(column, justify="right")
    table.add_row(
        *(
            str(summary[k])
            for k in ("documents", "extracted", "failed", "pages", "pages_per_minute", "seconds")
        )
    )
    console.print(table)
    for failure in summary.get("failures") or []:
        console.print(f"  failed: {failure['key']}: {failure['reason']}", markup=False)
    if summary.get("fields"):
        fields = Table(title="fields stored")
        for column in ("field", "documents", "mean confidence"):
            fields.add_column(column)
        for item in summary["fields"]:
            fields.add_row(item["name"], str(item["count"]), str(item["mean_confidence"]))
        console.print(fields)


def print_rows(columns: list[str], rows: list[tuple], title: str | None = None) -> None:
    """A table, its title on a line of its own above it (a table's own title is wrapped to the
    table's width, which cuts a long one into pieces)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(show_header=any(columns))
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    if title:
        console.print(title, markup=False, highlight=False)
    console.print(table)


def cmd_jobs(args: argparse.Namespace) -> int:
    from db.reads import recent_jobs

    with _session() as session:
        columns, rows = recent_jobs(session, args.limit)
    print_rows(columns, rows, title="recent jobs")
    return 0


def cmd_fields(args: argparse.Namespace) -> int:
    """DOCUMENT: a document id, a sha256 (or its first 8+ characters) or an object key."""
    from db.reads import fields_of_document

    with _session() as session:
        columns, rows = fields_of_document(session, args.document)
    if not rows:
        print(f"no extracted fields for {args.document!r}", file=sys.stderr)
        return 1
    print_rows(columns, rows)
    return 0


def _output(path: str | None):
    import contextlib

    if path is None:
        return contextlib.nullcontext(sys.stdout)
    return open(path, "w", newline="", encoding="utf-8")


def cmd_export(args: argparse.Namespace) -> int:
    """Every current field, one row per field, as CSV, JSON lines or Parquet."""
    import csv
    import json

    from db.reads import current_fields

    with _session() as session:
        columns, rows = current_fields(session, args.since)
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    if args.format == "parquet":
        if not args.out:
            raise SystemExit("docflow export: --format parquet needs --out FILE")
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), args.out)
    else:
        with _output(args.out) as out:
            if args.format == "csv":
                writer = csv.DictWriter(out, fieldnames=columns)
                writer.writeheader()
                writer.writerows(records)
            else:
                for record in records:
                    out.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
    if args.out:
        print(f"{len(records)} fields written to {args.out}", file=sys.stderr)
    return 0


def cmd_labels_import(args: argparse.Namespace) -> int:
    """labels import DIR: upload a labelled folder's documents to the inbox, register them and
    store their labels (source `--source`); OCR given beside a document is kept for training."""
    import hashlib
    from pathlib import Path

    from db.documents import DocumentObject, register_documents
    from db.labels import store_labels
    from db.session import session_scope
    from docformer.io import sniff_media_type
    from docformer.labelled import iter_labelled_folder
    from flows.clients import object_store, sessions
    from flows.ocr_cache import BucketOCRCache

    settings = _settings()
    store = object_store(settings)
    ocr_cache = BucketOCRCache(store, settings.artifact_bucket)
    folder = Path(args.folder)
    examples = list(iter_labelled_folder(folder))
    prefix = f"{settings.inbox_prefix}{args.prefix or f'labelled/{folder.resolve().name}/'}"
    labels = 0
    with _progress() as progress:
        bar = progress.add_task("importing", total=len(examples))
        for example in examples:
            data = example.document_path.read_bytes()
            sha256 = hashlib.sha256(data).hexdigest()
            key = f"{prefix}{example.document_path.name}"
            etag = store.put_bytes(settings.inbox_bucket, key, data)
            for index, ocr in enumerate(example.ocr_pages or []):
                ocr_cache.put_supplied(sha256, index, ocr)
            with session_scope(sessions(settings)) as session:
                [document] = register_documents(
                    session,
                    [
                        DocumentObject(
                            bucket=settings.inbox_bucket,
                            key=key,
                            sha256=sha256,
                            size=len(data),
                            media_type=sniff_media_type(data) or "application/octet-stream",
                            etag=etag or None,
                        )  # fmt: skip
                    ],
                )
                labels += store_labels(session, document.id, example.fields, args.source)
            progress.advance(bar)
    print(
        f"{len(examples)} documents, {labels} labels imported from {folder} (source {args.source!r})"
    )
    return 0


def cmd_labels_list(args: argparse.Namespace) -> int:
    """Every labelled document with its labels, one column per field (the values fine-tuning
    learns from: where sources disagree, the latest stored value)."""
    from db.labels import labelled_documents

    with _session() as session:
        labelled = labelled_documents(session, [args.source] if args.source else None)
    names = sorted({name for item in labelled for name in item.labels})
    source = f" from source {args.source!r}" if args.source else ""
    print_rows(
        ["document", "key", *names],
        [(item.document_id, item.key, *(item.labels.get(n) for n in names)) for item in labelled],
        title=f"{len(labelled)} labelled documents{source}",
    )
    return 0


def cmd_labels_export(args: argparse.Namespace) -> int:
    """labels export DIR: every labelled document back in the labelled-folder format (the
    document, `<name>.json` with its labels, `<name>.ocr.json` when every page's OCR is stored),
    for `docformer finetune --data DIR` elsewhere or `docflow labels import DIR` here."""
    from pathlib import Path

    from db.labels import labelled_documents
    from docformer.labelled import LabelledFolderError, write_labelled_example
    from flows.clients import object_store
    from flows.storage import ObjectMissing, ObjectTooLarge

    settings = _settings()
    store = object_store(settings)
    folder = Path(args.folder)
    with _session() as session:
        labelled = labelled_documents(session, [args.source] if args.source else None)
    names: set[str] = set()
    written, skipped = 0, []
    with _progress() as progress:
        bar = progress.add_task("exporting", total=len(labelled))
        for item in labelled:
            try:
                data = store.read_bytes(item.bucket, item.key, settings.max_document_bytes)
                write_labelled_example(
                    folder,
                    _example_name(item.key, item.document_id, names),
                    data,
                    item.labels,
                    _stored_ocr(store, settings.artifact_bucket, item.sha256, item.page_count),
                )
                written += 1
            except (ObjectMissing, ObjectTooLarge, LabelledFolderError) as error:
                skipped.append(f"{item.key}: {error}")
            progress.advance(bar)
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"{written} labelled documents written to {folder}")
    return 0 if not skipped else 1


def _example_name(key: str, document_id: int, taken: set[str]) -> str:
    """A labelled-folder name for the document at `key`: its file name without the extension,
    made safe for a file name, and made unique with the document id when two keys share it."""
    import re
    from pathlib import PurePosixPath

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", PurePosixPath(key).stem).lstrip(".")
    if not name or name.lower() in taken:
        name = f"{name or 'document'}-{document_id}"
    taken.add(name.lower())  # case-insensitive file systems would merge two names otherwise
    return name


def _stored_ocr(store, bucket: str, sha256: str, page_count: int | None) -> list | None:
    """The OCR of every page of a document, as digitize and fine-tuning read it: the OCR that
    came with an import, else the engine's cache. None unless every page has one (a partial
    `.ocr.json` would pair pages with the wrong OCR), so the reader OCRs the document itself."""
    from docformer.ocr.engine import engine_id as ocr_engine_id
    from flows.ocr_cache import BucketOCRCache

    cache, engine_id = BucketOCRCache(store, bucket, supplied_first=True), ocr_engine_id()
    pages = []
    while page_count is None or len(pages) < page_count:
        ocr = cache.get(sha256, len(pages), engine_id)
        if ocr is None:
            break
        pages.append(ocr)
    if not pages or (page_count is not None and len(pages) != page_count):
        return None
    return pages


# -- training and the model lifecycle -----------------------------------------------------------

# How often `--wait` asks a Prefect server how a run is doing.
POLL_SECONDS = 2.0


class CommandError(Exception):
    """A command that cannot do what it was asked, with the reason a person can act on."""


def _session():
    from flows.clients import sessions

    return sessions(_settings())()


def _write_session():
    from db.session import session_scope
    from flows.clients import sessions

    return session_scope(sessions(_settings()))


def _who() -> str:
    """Who is changing the active version, as recorded: the login and the machine."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in containers without a passwd entry
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _fields(value: str | None) -> list[str] | None:
    return [f.strip() for f in value.split(",") if f.strip()] if value else None


def _training_bar(title: str):
    """A progress bar fed by the training flows of this process (`training_progress`)."""
    import contextlib

    from flows.finetune import training_progress

    @contextlib.contextmanager
    def bar_context():
        with _progress() as progress:
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

    with get_client(sync_client=True) as client, _progress() as progress:
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

    with _session() as session:
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
        with _session() as session:
            _version(session, base)


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune now: in this process on the embedded default, or through the deployment when
    PREFECT_API_URL names a server; then the comparison the run recorded."""
    parameters = {
        "base_model_version": args.base,
        "fields": _fields(args.fields),
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "promote_margin": args.promote_margin,
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
    if _api_url() and not args.local:
        flow_run = _run_deployment(args.deployment, parameters, args.wait, progress_key)
        if flow_run is not None:
            print_run(finished_training_run(flow_run))
        return 0
    from flows.deployments import start_api

    start_api()
    with _training_bar(title), _flow_errors():
        result = training_flow(**parameters)
    print_run(result["training_run_id"])
    return 0


def print_finetune_run(run_id: int) -> None:
    """What a fine-tuning run recorded: the active and the new version's scores per field on
    its holdout, and whether the new one was promoted, and why (the weekly run's table)."""
    from db.models import TrainingRun
    from flows.finetune import finetune_table, promotion_reason

    with _session() as session:
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

    with _session() as session:
        run = session.get(TrainingRun, run_id)
        version = session.get(ModelVersion, run.result_version_id)
        base = session.get(ModelVersion, run.base_version_id) if run.base_version_id else None
        metrics, job_id, name = run.metrics, run.job_id, version.name
        base_name = base.name if base else "?"
    losses = metrics.get("final_losses") or {}
    print_rows(
        ["steps", "pages", "documents", *losses],
        [(metrics["steps"], metrics["pages"], metrics["documents"], *map(_round, losses.values()))],
        title=f"pretrain job {job_id}: candidate {name} (from {base_name})",
    )
    print(f"fine-tune from it: docflow finetune --base {name}")


def _round(value) -> str:
    return "" if value is None else f"{value:.4f}"


def _flow_errors():
    """Errors a training flow of this process raises for its input (no such version, too few
    labels, nothing digitized yet) become a one-line message; Prefect has logged the rest."""
    import contextlib

    @contextlib.contextmanager
    def translate():
        try:
            yield
        except (LookupError, ValueError) as error:
            raise CommandError(str(error.args[0]) if error.args else repr(error)) from error

    return translate()


def cmd_models(args: argparse.Namespace) -> int:
    from db.model_versions import list_model_versions

    with _session() as session:
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
                _round(v.f1),
                v.uri,
            )
            for v in versions
        ],
        title="model versions",
    )
    return 0


def _time(value) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _version(session, name: str):
    from db.model_versions import model_version_by_name

    version = model_version_by_name(session, name)
    if version is None:
        raise CommandError(f"no model version named {name!r} (`docflow models` lists them)")
    return version


def cmd_models_show(args: argparse.Namespace) -> int:
    """One version: where it is, where it came from (parent, training run, the labels it saw),
    its scores per field, and every time it was made active."""
    from db.model_versions import model_activations
    from db.models import ModelVersion
    from db.training_runs import training_run_of_version

    with _session() as session:
        version = _version(session, args.version)
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
                        *(_round(s.get(k)) for k in ("precision", "recall", "f1", "anls")),
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

    with _session() as session:
        for name in (args.a, args.b):
            _version(session, name)
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
        with _training_bar("evaluating"), _flow_errors():
            result = evaluate_versions([args.a, args.b], fields=_fields(args.fields))
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
        store = object_store(_settings())
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

    with _session() as session:
        version = _version(session, args.version)
        active = active_model_version(session)
        if active is not None and active.id == version.id:
            print(f"{version.name} is already the active model version; nothing changed.")
            return 0
    _activate(version, "activate", args.reason, args.by or _who())
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    from db.model_versions import active_model_version, rollback_target

    with _session() as session:
        active = active_model_version(session)
        target = rollback_target(session)
        if target is None:
            what = f"no version was active before {active.name}" if active else "none is active"
            raise CommandError(f"nothing to roll back to: {what}")
    _activate(target, "rollback", args.reason, args.by or _who())
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from flows.deployments import deploy_all

    result = deploy_all(extract_slots=args.extract_slots)
    print(result.stdout[-4000:], end="")
    if result.returncode != 0:
        print(result.stderr[-4000:], file=sys.stderr, end="")
    return result.returncode


def cmd_demo(args: argparse.Namespace) -> int:
    from flows import demo
    from flows.deployments import ensure_concurrency_limits, start_api
    from flows.digitize import digitize

    settings = _settings()
    with _progress() as progress:
        bar = progress.add_task("making sample scans", total=args.count)
        documents = []
        for document in demo.demo_documents(args.count, args.seed):
            documents.append(document)
            progress.advance(bar)
    with _progress() as progress:
        bar = progress.add_task("uploading to the inbox", total=len(documents))
        prefix = f"{settings.inbox_prefix}{demo.DEMO_PREFIX}"
        demo.upload_documents(settings, documents, prefix, lambda: progress.advance(bar))
    start_api()
    ensure_concurrency_limits()
    summary = digitize(prefix=prefix)
    print_summary(summary)
    print("\nAn example query (docs/SQL.md):\n")
    print(demo.EXAMPLE_QUERY)
    columns, rows = demo.run_example_query(settings)
    print_rows(columns, rows)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docflow",
        description="Digitize scanned documents: object storage -> OCR -> DocFormerv2 -> PostgreSQL.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser(
        "up", help="start the embedded PostgreSQL and SeaweedFS, create buckets, migrate"
    ).set_defaults(handler=cmd_up)
    commands.add_parser("down", help="stop the services `up` started (data is kept)").set_defaults(
        handler=cmd_down
    )
    commands.add_parser(
        "init", help="create the buckets and migrate the database on services already running"
    ).set_defaults(handler=cmd_init)
    commands.add_parser(
        "status", help="show each service's endpoint and whether it answers"
    ).set_defaults(handler=cmd_status)

    db = commands.add_parser("db", help="database schema migrations")
    db.set_defaults(handler=cmd_db)
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_commands.add_parser("upgrade", help="migrate up (default: to the latest)").add_argument(
        "revision", nargs="?", default="head"
    )
    db_commands.add_parser("downgrade", help="migrate down (default: one step)").add_argument(
        "revision", nargs="?", default="-1"
    )
    db_commands.add_parser("current", help="print the applied revision")

    upload = commands.add_parser(
        "upload", help="put files into the inbox bucket and emit docflow.document.uploaded"
    )
    upload.add_argument("files", nargs="+", metavar="FILE")
    upload.add_argument("--prefix", default="", help="key prefix inside the inbox prefix")
    upload.add_argument("--no-event", action="store_true", help="upload only; start no run")
    upload.set_defaults(handler=cmd_upload)

    run = commands.add_parser(
        "run",
        help="digitize now: in this process on the embedded default, or through the "
        "deployment when PREFECT_API_URL names a server",
    )
    run.add_argument("--prefix", default=None, help="only keys under this prefix")
    run.add_argument("--bucket", default=None, help="default: the inbox bucket")
    run.add_argument("--limit", type=int, default=None, help="at most this many documents")
    run.add_argument("--model", default=None, help="model version name or folder")
    run.add_argument("--chunk-size", type=int, default=None)
    run.add_argument("--modified-since", default=None, help="ISO date or time")
    run.add_argument("--reprocess", action="store_true", help="extract known documents again")
    run.add_argument("--wait", action="store_true", help="with a server: wait for the run")
    run.add_argument("--local", action="store_true", help="run here even with a server")
    run.add_argument("--deployment", default="digitize/digitize-nightly")
    run.set_defaults(handler=cmd_run)

    jobs = commands.add_parser("jobs", help="recent jobs with their counts")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(handler=cmd_jobs)

    fields = commands.add_parser("fields", help="the current fields of one document")
    fields.add_argument("document", help="document id, sha256 (prefix) or object key")
    fields.set_defaults(handler=cmd_fields)

    labels = commands.add_parser("labels", help="ground-truth labels")
    label_commands = labels.add_subparsers(dest="labels_command", metavar="ACTION", required=True)
    label_import = label_commands.add_parser(
        "import", help="upload a labelled folder's documents and store their labels"
    )
    label_import.add_argument("folder", metavar="DIR")
    label_import.add_argument("--source", default="import", help="who says these are right")
    label_import.add_argument("--prefix", default=None, help="default: labelled/<folder name>/")
    label_import.set_defaults(handler=cmd_labels_import)
    label_list = label_commands.add_parser("list", help="labelled documents and their labels")
    label_list.add_argument("--source", default=None, help="only labels from this source")
    label_list.set_defaults(handler=cmd_labels_list)
    label_export = label_commands.add_parser(
        "export", help="labelled documents back to a labelled folder (documents, labels, OCR)"
    )
    label_export.add_argument("folder", metavar="DIR")
    label_export.add_argument("--source", default=None, help="only labels from this source")
    label_export.set_defaults(handler=cmd_labels_export)

    export = commands.add_parser("export", help="current fields as CSV, JSON lines or Parquet")
    export.add_argument("--format", choices=["csv", "jsonl", "parquet"], default="csv")
    export.add_argument("--since", default=None, help="only fields extracted at or after this")
    export.add_argument("--out", default=None, help="file to write (default: standard output)")
    export.set_defaults(handler=cmd_export)

    models = commands.add_parser(
        "models", help="model versions: list (the default), show, compare, activate, rollback"
    )
    models.set_defaults(handler=cmd_models)
    model_commands = models.add_subparsers(dest="models_command", metavar="ACTION")
    model_commands.add_parser(
        "list", help="every version: which is active, parent, F1"
    ).set_defaults(handler=cmd_models)
    show = model_commands.add_parser(
        "show", help="one version: scores per field, training run, parent, labels, activations"
    )
    show.add_argument("version", metavar="VERSION")
    show.set_defaults(handler=cmd_models_show)
    compare = model_commands.add_parser(
        "compare", help="per-field F1 of two versions on the same holdout, side by side"
    )
    compare.add_argument("a", metavar="A")
    compare.add_argument("b", metavar="B")
    compare.add_argument(
        "--evaluate",
        action="store_true",
        help="score both now on the current labels' holdout, even when a run stored a comparison",
    )
    compare.add_argument(
        "--fields", default=None, help="with --evaluate: comma-separated (default: the labels')"
    )
    compare.set_defaults(handler=cmd_models_compare)
    activate = model_commands.add_parser(
        "activate", help="make VERSION the one digitize extracts with (its weights must load)"
    )
    activate.add_argument("version", metavar="VERSION")
    rollback = model_commands.add_parser(
        "rollback", help="go back to the version active before the active one"
    )
    for parser_ in (activate, rollback):
        parser_.add_argument("--reason", default=None, help="why, kept with the change")
        parser_.add_argument("--by", default=None, help="who, kept with it (default: user@host)")
    activate.set_defaults(handler=cmd_models_activate)
    rollback.set_defaults(handler=cmd_models_rollback)

    finetune = commands.add_parser(
        "finetune",
        help="fine-tune a new version on the labels now: in this process, or through the "
        "finetune-weekly deployment when PREFECT_API_URL names a server",
    )
    finetune.add_argument("--base", default=None, help="version to start from (default: active)")
    finetune.add_argument("--fields", default=None, help="comma-separated (default: the labels')")
    finetune.add_argument("--epochs", type=int, default=None)
    finetune.add_argument("--max-steps", type=int, default=None)
    finetune.add_argument("--batch-size", type=int, default=None)
    finetune.add_argument("--lr", type=float, default=None)
    finetune.add_argument(
        "--promote-margin", type=float, default=None, help="F1 to beat the active one by"
    )
    finetune.add_argument("--deployment", default="finetune/finetune-weekly")
    pretrain = commands.add_parser(
        "pretrain",
        help="continue pre-training on the documents already digitized: in this process, or "
        "through the pretrain deployment when PREFECT_API_URL names a server",
    )
    pretrain.add_argument("--base", default=None, help="version to start from (default: active)")
    pretrain.add_argument("--steps", type=int, default=None)
    pretrain.add_argument("--batch-size", type=int, default=None)
    pretrain.add_argument("--lr", type=float, default=None)
    pretrain.add_argument("--max-pages", type=int, default=None)
    pretrain.add_argument("--deployment", default="pretrain/pretrain")
    for parser_ in (finetune, pretrain):
        parser_.add_argument("--wait", action="store_true", help="with a server: wait for it")
        parser_.add_argument("--local", action="store_true", help="run here even with a server")
    finetune.set_defaults(handler=cmd_finetune)
    pretrain.set_defaults(handler=cmd_pretrain)

    deploy = commands.add_parser(
        "deploy",
        help="create work pools, the concurrency limit and prefect.yaml's deployments "
        "on the server in PREFECT_API_URL",
    )
    deploy.add_argument(
        "--extract-slots", type=int, default=1, help="extraction batches at once, all workers"
    )
    deploy.set_defaults(handler=cmd_deploy)

    demo = commands.add_parser(
        "demo", help="sample scans into the inbox, digitize them here, print summary and a query"
    )
    demo.add_argument("--count", type=int, default=20)
    demo.add_argument("--seed", type=int, default=2024)
    demo.set_defaults(handler=cmd_demo)
    return parser


def _settings():
    from flows.settings import get_settings

    return get_settings()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from embedded.prefect_env import apply_prefect_environment

    # Before any subcommand imports prefect, which reads its settings once, at import.
    apply_prefect_environment(_settings())
    try:
        return int(args.handler(args) or 0)
    except Exception as exc:
        message = _explain(exc)
        if message is None:
            raise
        print(f"docflow: error: {message}", file=sys.stderr)
        return 1


def _explain(exc: Exception) -> str | None:
    """A one-line message for the failures a user can fix (a service down, a port taken);
    None for anything else, which keeps its traceback."""
    from embedded.processes import ServiceError
    from flows.storage import StorageError

    if isinstance(exc, (ServiceError, StorageError, CommandError)):
        return str(exc)
    if "sqlalchemy" in sys.modules:
        import sqlalchemy.exc

        if isinstance(exc, sqlalchemy.exc.OperationalError):
            # psycopg2's own message names host and port, never the password.
            reason = str(exc.orig).strip().splitlines()[0]
            return f"database {_settings().masked_database_url}: {reason}"
    return None
