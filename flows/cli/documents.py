"""Documents in, digitize, results out: `upload`, `run`, `jobs`, `fields`, `export`, `search`
and `demo`."""

from __future__ import annotations

import argparse
import json
import sys

from flows.cli.common import (
    CommandError,
    api_url,
    load_settings,
    open_session,
    print_rows,
    progress_bar,
    rounded,
)

UPLOAD_EVENT = "docflow.document.uploaded"
# At most this many keys, and about this many bytes of them, in one upload event: one event,
# so one run, per `docflow upload` but for huge ones (Prefect's event limit is 1.5 MB).
UPLOAD_EVENT_KEYS = 1000
UPLOAD_EVENT_BYTES = 1_000_000
# Rows `export` fetches from the database at a time: what it holds in memory (CSV, JSON lines).
EXPORT_BATCH_ROWS = 1000
# A CSV cell starting with one of these is a formula to a spreadsheet (=HYPERLINK(...), +1+1,
# @SUM(...); tab and CR can hide one): OWASP's "CSV Injection" advice is to prefix it with '.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def upload_event_payloads(
    bucket: str,
    keys: list[str],
    max_keys: int = UPLOAD_EVENT_KEYS,
    max_bytes: int = UPLOAD_EVENT_BYTES,
) -> list[dict]:
    """The payloads of the events announcing `keys`: one for the whole upload, so one
    `docflow upload` starts one run however many files it puts; split in order only where the
    keys would pass `max_keys` or about `max_bytes` of JSON (Prefect refuses an event over its
    size limit, 1.5 MB by default)."""
    payloads: list[dict] = []
    batch: list[str] = []
    size = 0
    for key in keys:
        cost = len(json.dumps(key).encode()) + 2  # the quoted key and its separator
        if batch and (len(batch) >= max_keys or size + cost > max_bytes):
            payloads.append({"bucket": bucket, "keys": batch})
            batch, size = [], 0
        batch.append(key)
        size += cost
    if batch:
        payloads.append({"bucket": bucket, "keys": batch})
    return payloads


def emit_upload_events(bucket: str, keys: list[str]) -> list:
    """Tell Prefect that `keys` arrived in `bucket`: the `digitize-on-upload` deployment's
    trigger starts a run for exactly those keys (its concurrency limit queues the runs past
    it). Any client may emit the same event: name `docflow.document.uploaded`, resource id
    `docflow.inbox.<bucket>`, payload {"bucket": ..., "keys": [...]}; the run refuses a bucket
    that is neither the inbox nor in DOCFLOW_UPLOAD_BUCKETS. Returns the events sent (none
    when Prefect events are turned off)."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    events = [
        emit_event(
            event=UPLOAD_EVENT,
            resource={
                "prefect.resource.id": f"docflow.inbox.{bucket}",
                "prefect.resource.name": bucket,
            },
            payload=payload,
        )
        for payload in upload_event_payloads(bucket, keys)
    ]
    EventsWorker.drain_all()  # events are sent in the background; this process ends next
    return [event for event in events if event is not None]


def cmd_upload(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flows.clients import object_store

    settings = load_settings()
    paths = list(map(Path, args.files))
    keys = [f"{settings.inbox_prefix}{args.prefix}{path.name}" for path in paths]
    _refuse_shared_keys(paths, keys)
    store = object_store(settings)
    store.ensure_bucket(settings.inbox_bucket)
    with progress_bar() as progress:
        bar = progress.add_task("uploading", total=len(paths))
        for path, key in zip(paths, keys, strict=True):
            store.put_file(settings.inbox_bucket, key, path)
            progress.advance(bar)
    for key in keys:
        print(f"s3://{settings.inbox_bucket}/{key}")
    if not args.no_event:
        events = emit_upload_events(settings.inbox_bucket, keys)
        if not events:
            print("no event sent: Prefect events are turned off here", file=sys.stderr)
        for event in events:
            print(f"event {UPLOAD_EVENT} {event.id}")
    return 0


def _refuse_shared_keys(paths: list, keys: list[str]) -> None:
    """Files named alike in different folders (a/x.pdf, b/x.pdf) get the same key, and the last
    would silently replace the others: refuse before anything is uploaded, naming them."""
    files_by_key: dict[str, list[str]] = {}
    for path, key in zip(paths, keys, strict=True):
        files_by_key.setdefault(key, []).append(str(path))
    shared = {key: files for key, files in files_by_key.items() if len(files) > 1}
    if shared:
        clashes = "; ".join(f"{', '.join(files)} -> {key}" for key, files in shared.items())
        raise CommandError(
            f"files would share a key, the last replacing the others: {clashes}. Nothing was "
            "uploaded; upload them in separate commands with different --prefix values"
        )


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
    if api_url() and not args.local:
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

    with open_session() as session:
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
    if summary.get("released"):
        console.print(f"  given back to the queue for the next run: {summary['released']}")
    archive = summary.get("archive")
    if archive and (archive["written"] or archive["skipped"] or archive["failed"]):
        console.print(
            f"  archive s3://{archive['bucket']}: {archive['written']} written, "
            f"{archive['skipped']} already there",
            markup=False,
        )
        for failure in archive["failed"]:
            console.print(
                f"  archive not written: {failure['key']}: {failure['reason']}", markup=False
            )
    if summary.get("fields"):
        fields = Table(title="fields stored")
        for column in ("field", "documents", "mean confidence"):
            fields.add_column(column)
        for item in summary["fields"]:
            fields.add_row(item["name"], str(item["count"]), str(item["mean_confidence"]))
        console.print(fields)


def cmd_jobs(args: argparse.Namespace) -> int:
    from db.reads import recent_jobs

    with open_session() as session:
        columns, rows = recent_jobs(session, args.limit)
    print_rows(columns, rows, title="recent jobs")
    return 0


def cmd_fields(args: argparse.Namespace) -> int:
    """DOCUMENT: a document id, a sha256 (or its first 8+ characters) or an object key."""
    from db.reads import fields_of_document

    with open_session() as session:
        columns, rows = fields_of_document(session, args.document)
    if not rows:
        print(f"no extracted fields for {args.document!r}", file=sys.stderr)
        return 1
    print_rows(columns, rows)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """The pages whose OCR text matches QUERY, best first: rank, document, page (from 0) and a
    snippet with the matches in bold. QUERY is what one types into a search box: words (pages
    with all of them), "a phrase", `or`, -word; case does not matter."""
    from db.reads import search_pages

    if args.limit < 1:
        raise CommandError(f"--limit must be at least 1, not {args.limit}")
    with open_session() as session:
        matches = search_pages(session, args.query, args.limit)
    if not matches:
        print(f"no page matches {args.query!r}", file=sys.stderr)
        return 1
    columns = ["rank", "document_id", "source_key", "page_index", "snippet"]
    rows = [
        (rounded(m.rank), m.document_id, m.source_key, m.page_index, _snippet(m)) for m in matches
    ]
    print_rows(columns, rows)
    return 0


# A page's lines, run together in a snippet, with this between them: one row per match.
SNIPPET_LINE_BREAK = " · "


def _snippet(match):
    """The match's snippet as Rich text: the matched words bold, the page's text never read as
    markup, its line breaks shown as SNIPPET_LINE_BREAK."""
    from rich.text import Text

    text = Text()
    for piece, is_match in match.snippet_parts():
        text.append(piece.replace("\n", SNIPPET_LINE_BREAK), style="bold" if is_match else "")
    return text


def _output(path: str | None):
    import contextlib

    if path is None:
        return contextlib.nullcontext(sys.stdout)
    return open(path, "w", newline="", encoding="utf-8")


def cmd_export(args: argparse.Namespace) -> int:
    """Every current field, one row per field, as CSV, JSON lines or Parquet.

    CSV and JSON lines are written as the rows arrive from the database, `EXPORT_BATCH_ROWS`
    at a time, so an export of any size fits in memory; Parquet is built whole. CSV cells that
    a spreadsheet would run as a formula are neutralised (`spreadsheet_safe`); JSON lines and
    Parquet keep every value as it is."""
    import csv
    import json

    from db.reads import iter_current_fields

    if args.format == "parquet" and not args.out:
        raise SystemExit("docflow export: --format parquet needs --out FILE")
    written = 0
    with open_session() as session:
        columns, rows = iter_current_fields(session, args.since, EXPORT_BATCH_ROWS)
        if args.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            records = [dict(zip(columns, row, strict=True)) for row in rows]
            pq.write_table(pa.Table.from_pylist(records), args.out)
            written = len(records)
        else:
            with _output(args.out) as out:
                if args.format == "csv":
                    writer = csv.writer(out)
                    writer.writerow(columns)
                    for row in rows:
                        writer.writerow([spreadsheet_safe(value) for value in row])
                        written += 1
                else:
                    for row in rows:
                        record = dict(zip(columns, row, strict=True))
                        out.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
                        written += 1
    if args.out:
        print(f"{written} fields written to {args.out}", file=sys.stderr)
    return 0


def spreadsheet_safe(value):
    """A CSV cell's value, with a text that a spreadsheet would read as a formula (it starts
    with one of `FORMULA_STARTS`) prefixed by an apostrophe, which makes it plain text there.
    Numbers and dates are left alone: a negative amount in `value_num` stays a number."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def cmd_demo(args: argparse.Namespace) -> int:
    from flows import demo
    from flows.deployments import ensure_concurrency_limits, start_api
    from flows.digitize import digitize

    settings = load_settings()
    with progress_bar() as progress:
        bar = progress.add_task("making sample scans", total=args.count)
        documents = []
        for document in demo.demo_documents(args.count, args.seed):
            documents.append(document)
            progress.advance(bar)
    with progress_bar() as progress:
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
    print(
        f'\nA full-text search over every page (docflow search "{demo.DEMO_SEARCH}" --limit 3):\n'
    )
    cmd_search(argparse.Namespace(query=demo.DEMO_SEARCH, limit=3))
    print("\n" + demo.archive_line(settings))
    return 0
