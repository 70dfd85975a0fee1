"""What the commands share: the settings, a database session, the progress bar, tables, and
the errors a person can act on."""

from __future__ import annotations


class CommandError(Exception):
    """A command that cannot do what it was asked, with the reason a person can act on."""


def load_settings():
    """The settings of this process (`DOCFLOW_*` and `.env`), read once."""
    from flows.settings import get_settings

    return get_settings()


def service_settings():
    """The settings with each `prefect-secret:` value replaced by its block's value, for the
    commands that hand the settings on to code reading the secrets itself (the embedded
    services, migrations, the status checks). The values stay `SecretStr`, and
    `masked_database_url` then hides the password of the real URL."""
    from pydantic import SecretStr

    from flows.settings import reveal

    settings = load_settings()
    return settings.model_copy(
        update={
            "database_url": SecretStr(reveal(settings.database_url)),
            "s3_secret_key": SecretStr(reveal(settings.s3_secret_key)),
        }
    )


def open_session():
    """A session on the configured database pool, for reads (use it in `with`)."""
    from flows.clients import sessions

    return sessions(load_settings())()


def api_url() -> str | None:
    """The Prefect server in PREFECT_API_URL; None on the embedded default (ephemeral API)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def progress_bar():
    """A rich progress display: description, bar, done/total and time elapsed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(),
    )  # fmt: skip


def print_rows(columns: list[str], rows: list[tuple], title: str | None = None) -> None:
    """A table, its title on a line of its own above it (a table's own title is wrapped to the
    table's width, which cuts a long one into pieces).

    Values are shown as their text, never read as Rich markup: a key or a page that prints
    "[bold]" or "[/]" shows it as it is. A value that is already a `rich.text.Text` is shown
    with its own styles (how a caller highlights part of a value)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    table = Table(show_header=any(columns))
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in row)
        )
    if title:
        console.print(title, markup=False, highlight=False)
    console.print(table)


def rounded(value) -> str:
    """A score to four decimals for a table; empty for None."""
    return "" if value is None else f"{value:.4f}"


def field_names(value: str | None) -> list[str] | None:
    """A comma-separated `--fields` value as a list; None when not given."""
    return [f.strip() for f in value.split(",") if f.strip()] if value else None


def version_named(session, name: str):
    """The model version registered as `name`; CommandError when there is none."""
    from db.model_versions import model_version_by_name

    version = model_version_by_name(session, name)
    if version is None:
        raise CommandError(f"no model version named {name!r} (`docflow models` lists them)")
    return version
