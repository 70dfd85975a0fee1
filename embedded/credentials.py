"""The credentials of the embedded default: made by the first `docflow up`, kept in
`$DOCFLOW_HOME/credentials.json` (mode 0600) and read by every later command through the
settings, so nothing has to be set by hand and nothing secret is a constant in the code.

    {"database_password": ..., "s3_access_key": ..., "s3_secret_key": ...}

The home itself is private (`private_home`): 0700, or 0710 with the group of the PostgreSQL
server's own OS user when docflow runs as root (that user must reach its data directory, and
nobody else may even list the home). SeaweedFS's internal keys and certificates are its own
business and live beside its data (`embedded/seaweedfs_security.py`).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True)
class Credentials:
    database_password: str
    s3_access_key: str
    s3_secret_key: str

    @classmethod
    def generate(cls) -> Credentials:
        # URL-safe and quote-free: they go into a database URL and an environment unescaped.
        return cls(
            database_password=secrets.token_urlsafe(24),
            s3_access_key="DOCFLOW" + secrets.token_hex(8).upper(),
            s3_secret_key=secrets.token_hex(24),
        )


class CredentialsError(ValueError):
    """The credentials file cannot be read; the message names it and what to do."""


def credentials_path(home: Path) -> Path:
    return Path(home).expanduser().resolve() / CREDENTIALS_FILE


def load_credentials(home: Path) -> Credentials | None:
    """The credentials kept in `home`, or None when `docflow up` has not made any there."""
    path = credentials_path(home)
    try:
        data = json.loads(path.read_text())
        return Credentials(**{name: str(data[name]) for name in Credentials.__dataclass_fields__})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CredentialsError(
            f"cannot read the embedded services' credentials in {path} ({type(exc).__name__}); "
            f"restore the file, or remove it together with the services' data under "
            f"{path.parent} to start afresh"
        ) from None


def ensure_credentials(home: Path) -> tuple[Credentials, bool]:
    """The credentials kept in `home`, made (and the home created, private) when there are none.
    Returns them and whether they were made now. Safe against a concurrent `docflow up`: the
    file appears whole or not at all, and the first one written is the one both use."""
    existing = load_credentials(home)
    path = credentials_path(home)
    if existing is not None:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return existing, False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    credentials = Credentials.generate()
    draft = path.with_name(f".{CREDENTIALS_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    write_private(draft, json.dumps(asdict(credentials), indent=2) + "\n")
    try:
        os.link(draft, path)  # fails if another `up` got there first: theirs stands
    except FileExistsError:
        return load_credentials(home) or credentials, False
    finally:
        draft.unlink(missing_ok=True)
    return credentials, True


def write_private(path: Path, text: str) -> None:
    """Write a new file readable by its owner only, from the moment it exists."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def private_home(home: Path, group: int | None = None) -> Path:
    """Create `home` (or tighten one an older docflow made world-readable): mode 0700, or 0710
    with `group` when another OS user (the PostgreSQL server's, when root) must pass through it.
    Returns the resolved path."""
    home = Path(home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if group is not None and home.stat().st_gid != group:
        os.chown(home, -1, group)
    home.chmod(0o710 if group is not None else 0o700)
    return home


def private_dir(path: Path) -> Path:
    """A directory inside the home for one owner only (created 0700, tightened if looser)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path
