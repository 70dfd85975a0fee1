"""The `docflow` command.

One function per subcommand (`cmd_<name>`), registered in `build_parser()`. Every import that
costs time (Prefect, SQLAlchemy, minio, torch) happens inside the subcommand that needs it, so
`docflow --help` stays instant. To add a subcommand: write `cmd_x(args) -> int`, add a parser
for it in `build_parser()` with `set_defaults(handler=cmd_x)`.
"""

from __future__ import annotations

import argparse
import sys


def cmd_up(args: argparse.Namespace) -> int:
    from flows import services

    services.up(_settings())
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from flows import services

    services.down(_settings())
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from flows import services

    services.prepare(_settings())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from flows import services

    checks = services.status(_settings())
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

    from flows.tasks import object_store

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
    rows = _query(
        "SELECT id AS job_id, status, documents_seen AS documents, documents_extracted AS "
        "extracted, documents_failed AS failed, pages, extract(epoch FROM finished_at - "
        "started_at) AS seconds FROM jobs WHERE flow_run_id = :id",
        id=str(flow_run_id),
    )
    if not rows[1]:
        return None
    summary = dict(zip(rows[0], rows[1][0], strict=True))
    seconds = float(summary["seconds"] or 0)
    summary["seconds"] = round(seconds, 2)
    summary["pages_per_minute"] = round(60 * summary["pages"] / seconds, 1) if seconds else 0.0
    return summary


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


def _query(sql: str, **params) -> tuple[list[str], list[tuple]]:
    import sqlalchemy as sa

    engine = sa.create_engine(_settings().database_url.get_secret_value())
    try:
        with engine.connect() as connection:
            result = connection.execute(sa.text(sql), params)
            return list(result.keys()), [tuple(row) for row in result]
    finally:
        engine.dispose()


def print_rows(columns: list[str], rows: list[tuple], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


def cmd_jobs(args: argparse.Namespace) -> int:
    columns, rows = _query(
        "SELECT id, kind, status, started_at::timestamp(0) AS started, "
        "round(extract(epoch FROM finished_at - started_at)::numeric, 1) AS seconds, "
        "documents_seen AS documents, documents_extracted AS extracted, "
        "documents_failed AS failed, pages, left(error, 80) AS error "
        "FROM jobs ORDER BY id DESC LIMIT :limit",
        limit=args.limit,
    )
    print_rows(columns, rows, title="recent jobs")
    return 0


def cmd_fields(args: argparse.Namespace) -> int:
    """DOCUMENT: a document id, a sha256 (or its first 8+ characters) or an object key."""
    document = args.document
    if document.isdigit():
        where, value = "document_id = :v", int(document)
    elif len(document) >= 8 and all(c in "0123456789abcdef" for c in document):
        where, value = "sha256 LIKE :v", f"{document}%"
    else:
        where, value = (
            "document_id IN (SELECT document_id FROM document_sources WHERE key = :v)",
            document,
        )
    columns, rows = _query(
        "SELECT document_id, source_key, name, value, value_num, value_date, currency, "
        f"round(confidence::numeric, 3) AS confidence, page, box FROM current_fields WHERE {where} "
        "ORDER BY document_id, name",
        v=value,
    )
    if not rows:
        print(f"no extracted fields for {document!r}", file=sys.stderr)
        return 1
    print_rows(columns, rows)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    columns, rows = _query(
        "SELECT v.id, v.name, v.status, p.name AS parent, v.created_at::timestamp(0) AS created, "
        "coalesce(v.metrics #>> '{overall,f1}', v.metrics ->> 'f1') AS f1, v.uri "
        "FROM model_versions AS v LEFT JOIN model_versions AS p ON p.id = v.parent_id "
        "ORDER BY v.id"
    )
    print_rows(columns, rows, title="model versions")
    return 0


EXPORT_SQL = """
SELECT document_id, source_bucket, source_key, sha256, model_version, extracted_at,
       name, value, value_num, value_date, currency, confidence, page, box
FROM current_fields
WHERE (CAST(:since AS timestamptz) IS NULL OR extracted_at >= CAST(:since AS timestamptz))
ORDER BY document_id, name
"""


def _output(path: str | None):
    import contextlib

    if path is None:
        return contextlib.nullcontext(sys.stdout)
    return open(path, "w", newline="", encoding="utf-8")


def cmd_export(args: argparse.Namespace) -> int:
    """Every current field, one row per field, as CSV, JSON lines or Parquet."""
    import csv
    import json

    columns, rows = _query(EXPORT_SQL, since=args.since)
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


def cmd_labels(args: argparse.Namespace) -> int:
    """labels import DIR: upload a labelled folder's documents to the inbox, register them and
    store their labels (source `--source`); OCR given beside a document is kept for training."""
    import hashlib
    from pathlib import Path

    from db.queries import DocumentObject, register_documents, store_labels
    from db.session import session_scope
    from docformer.io import sniff_media_type
    from docformer.labelled import iter_labelled_folder
    from flows.tasks import object_store, sessions, supplied_ocr_key

    settings = _settings()
    store = object_store(settings)
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
                store.put_json(
                    settings.artifact_bucket, supplied_ocr_key(sha256, index), ocr.to_dict()
                )
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
    label_import.set_defaults(handler=cmd_labels)

    export = commands.add_parser("export", help="current fields as CSV, JSON lines or Parquet")
    export.add_argument("--format", choices=["csv", "jsonl", "parquet"], default="csv")
    export.add_argument("--since", default=None, help="only fields extracted at or after this")
    export.add_argument("--out", default=None, help="file to write (default: standard output)")
    export.set_defaults(handler=cmd_export)

    commands.add_parser(
        "models", help="model versions: which is active, their metrics"
    ).set_defaults(handler=cmd_models)

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

    from flows.services import apply_prefect_environment

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
    from flows.services import ServiceError
    from flows.storage import StorageError

    if isinstance(exc, (ServiceError, StorageError)):
        return str(exc)
    if "sqlalchemy" in sys.modules:
        import sqlalchemy.exc

        if isinstance(exc, sqlalchemy.exc.OperationalError):
            # psycopg2's own message names host and port, never the password.
            reason = str(exc.orig).strip().splitlines()[0]
            return f"database {_settings().masked_database_url}: {reason}"
    return None


if __name__ == "__main__":
    raise SystemExit(main())
