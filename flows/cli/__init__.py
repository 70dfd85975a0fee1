"""The `docflow` command: the parser, `main` and the errors it explains.

One function per subcommand (`cmd_<name>`), in the module of its group: `services` (up, down,
init, status, db, deploy), `documents` (upload, run, jobs, fields, export, search, demo),
`labels`, `models`, `training` (finetune, pretrain) and `review` (review, reviewers, which
registers its own parsers); what they share is in `common`. Each is
registered in `build_parser()`. Every import that costs time (Prefect, SQLAlchemy, minio,
torch) happens inside the subcommand that needs it, so `docflow --help` stays instant. To add a
subcommand: write `cmd_x(args) -> int` in its group's module, add a parser for it in
`build_parser()` with `set_defaults(handler=cmd_x)`.
"""

from __future__ import annotations

import argparse
import sys

from flows.cli.common import CommandError, load_settings
from flows.cli.documents import (
    cmd_demo,
    cmd_export,
    cmd_fields,
    cmd_jobs,
    cmd_run,
    cmd_search,
    cmd_upload,
)
from flows.cli.labels import cmd_labels_export, cmd_labels_import, cmd_labels_list
from flows.cli.models import (
    cmd_models,
    cmd_models_activate,
    cmd_models_compare,
    cmd_models_rollback,
    cmd_models_show,
)
from flows.cli.review import add_parsers as add_review_parsers
from flows.cli.services import cmd_db, cmd_deploy, cmd_down, cmd_init, cmd_status, cmd_up
from flows.cli.training import cmd_finetune, cmd_pretrain


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
    downgrade = db_commands.add_parser(
        "downgrade", help="migrate down to REVISION, or one step with --yes (drops data)"
    )
    downgrade.add_argument("revision", nargs="?", default=None, metavar="REVISION")
    downgrade.add_argument(
        "--yes", action="store_true", help="without REVISION: go down one step, no questions"
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

    search = commands.add_parser(
        "search",
        help="full-text search over every page's OCR text: ranked pages with a snippet",
        description="Pages whose OCR text matches QUERY, best first. QUERY is web search "
        'syntax: words (all of them), "a phrase", OR, -word; case does not matter. Words in '
        "a page's headings rank above the same words in its body. page_index counts from 0.",
    )
    search.add_argument("query", metavar="QUERY")
    search.add_argument("--limit", type=int, default=20, help="at most this many pages")
    search.set_defaults(handler=cmd_search)

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

    export = commands.add_parser(
        "export",
        help="current fields as CSV, JSON lines or Parquet (CSV cells a spreadsheet would run "
        "as formulas, starting with = + - @ tab or CR, get a leading ')",
    )
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
    finetune.add_argument(
        "--min-holdout",
        type=int,
        default=None,
        help="labelled holdout documents each compared field needs for a promotion "
        "(default: DOCFLOW_FINETUNE_MIN_HOLDOUT, 20)",
    )
    finetune.add_argument(
        "--allow-fewer-fields",
        action="store_true",
        help="let a version that reads fewer fields than the active one be promoted",
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

    add_review_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from embedded.prefect_env import apply_prefect_environment

    # Before any subcommand imports prefect, which reads its settings once, at import.
    apply_prefect_environment(load_settings())
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
            return f"database {load_settings().masked_database_url}: {reason}"
    return None
