"""The commands around the services: `up`, `down`, `init`, `status`, `db` (schema migrations) and
`deploy` (work pools, the concurrency limit and the deployments on a Prefect server).

They read the settings through `service_settings`: a database URL or S3 secret kept in a
Prefect Secret block (`prefect-secret:<block>`) is the block's value here too."""

from __future__ import annotations

import argparse
import sys

from flows.cli.common import CommandError, load_settings, service_settings


def cmd_up(args: argparse.Namespace) -> int:
    from flows import provision
    from flows.settings import get_settings

    # The first `up` generates the credentials; the settings then read them like any command's.
    if provision.make_credentials(load_settings().home):
        get_settings.cache_clear()
    provision.up(service_settings())
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from embedded.control import stop

    stop(service_settings())
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from flows import provision

    provision.prepare(service_settings())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from flows import provision

    checks = provision.status(service_settings())
    width = max(len(c.name) for c in checks)
    for check in checks:
        mark = "ok  " if check.answers else "DOWN"
        print(f"{mark} {check.name:<{width}}  {check.endpoint}  ({check.detail})")
    return 0 if all(c.answers for c in checks) else 1


def cmd_db(args: argparse.Namespace) -> int:
    from db import migrate

    url = service_settings().database_url.get_secret_value()
    if args.db_command == "upgrade":
        migrate.upgrade(url, args.revision)
    elif args.db_command == "downgrade":
        # A downgrade drops tables and the data in them: never by default.
        if args.revision is None and not args.yes:
            raise CommandError(
                "db downgrade drops tables and their data: name the revision to go down to "
                "(`docflow db current` shows where it is), or pass --yes to go down one step"
            )
        migrate.downgrade(url, args.revision or "-1")
    else:
        print(migrate.current(url) or "(empty database: no revision applied)")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from flows.deployments import deploy_all

    result = deploy_all(extract_slots=args.extract_slots)
    print(result.stdout[-4000:], end="")
    if result.returncode != 0:
        print(result.stderr[-4000:], file=sys.stderr, end="")
    return result.returncode
