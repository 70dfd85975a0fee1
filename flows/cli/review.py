"""`docflow review` (the review application) and `docflow reviewers` (who may sign in)."""

from __future__ import annotations

import argparse
import getpass
import sys

from flows.cli.common import CommandError, load_settings, open_session, print_rows


def read_password(from_stdin: bool) -> str:
    """From standard input (one line) with --password-stdin, else asked twice at a prompt
    that does not echo. Never printed, never logged."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise CommandError("the two passwords differ; nothing was changed")
    if len(password) < 8:
        raise CommandError("a password has at least 8 characters; nothing was changed")
    return password


def cmd_reviewers_add(args: argparse.Namespace) -> int:
    from db.review import add_reviewer
    from flows.review.auth import hash_password

    name = args.name.strip()
    if not name:
        raise CommandError("a reviewer needs a name")
    password_hash = hash_password(read_password(args.password_stdin))
    with open_session() as session:
        reviewer_id = add_reviewer(session, name, password_hash)
        session.commit()
    print(f"reviewer {name!r} (id {reviewer_id}) may sign in to `docflow review`")
    return 0


def cmd_reviewers_list(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    with open_session() as session:
        result = session.execute(
            text(
                "SELECT r.name, r.disabled, r.created_at::timestamp(0) AS created,"
                " count(d.id) AS decisions FROM reviewers AS r"
                " LEFT JOIN review_decisions AS d ON d.reviewer_id = r.id"
                " GROUP BY r.id ORDER BY r.name"
            )
        )
        print_rows(list(result.keys()), [tuple(row) for row in result], title="reviewers")
    return 0


def cmd_reviewers_disable(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    with open_session() as session:
        found = session.execute(
            text("UPDATE reviewers SET disabled = true WHERE name = :n RETURNING id"),
            {"n": args.name},
        ).scalar_one_or_none()
        session.execute(text("DELETE FROM review_leases WHERE reviewer_id = :r"), {"r": found or 0})
        session.commit()
    if found is None:
        raise CommandError(f"no reviewer named {args.name!r}")
    print(f"reviewer {args.name!r} can no longer sign in; their decisions are kept")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """Serve the review application until interrupted."""
    import uvicorn

    from flows.clients import object_store, sessions
    from flows.review.app import create_app

    settings = load_settings()
    app = create_app(settings, sessions(settings), object_store(settings))
    print(f"docflow review on http://{args.host}:{args.port}/ (Ctrl-C stops it)")
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        log_level="info",
    )
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:
    review = commands.add_parser(
        "review", help="the review web application: people check the fields the model was unsure of"
    )
    review.add_argument("--host", default="127.0.0.1", help="address to listen on")
    review.add_argument("--port", type=int, default=8765)
    review.add_argument(
        "--proxy-headers",
        action="store_true",
        help="behind a reverse proxy: trust its X-Forwarded-* headers",
    )
    review.add_argument(
        "--forwarded-allow-ips", default="127.0.0.1", help="proxies whose headers are trusted"
    )
    review.set_defaults(handler=cmd_review)

    reviewers = commands.add_parser("reviewers", help="who may sign in to `docflow review`")
    actions = reviewers.add_subparsers(dest="reviewers_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a reviewer, or set a reviewer's password")
    add.add_argument("name", metavar="NAME")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(handler=cmd_reviewers_add)
    actions.add_parser("list", help="reviewers and their decisions").set_defaults(
        handler=cmd_reviewers_list
    )
    disable = actions.add_parser("disable", help="stop a reviewer signing in")
    disable.add_argument("name", metavar="NAME")
    disable.set_defaults(handler=cmd_reviewers_disable)
