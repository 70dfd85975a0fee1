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
