"""Sign-in for the review application: argon2 password hashes, the session cookie's secret,
and the CSRF token every form carries.

The session is a cookie signed with the application's secret (Starlette's SessionMiddleware):
it holds the reviewer's id and name and the session's CSRF token, nothing else. A POST is
accepted only with that token, from the form field `csrf_token` or the `X-CSRF-Token` header,
so a page on another site cannot make a signed-in reviewer's browser decide anything. The
secret comes from `DOCFLOW_REVIEW_SECRET_KEY`, or is made once and kept in `$DOCFLOW_HOME`
(mode 0600), so signing in survives a restart of the application.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SECRET_FILE = "review-secret-key"

_hasher = PasswordHasher()
# Verified against when the name is unknown, so an unknown name costs the same time as a
# wrong password and sign-in does not tell which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("a password has at least 8 characters")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def session_secret(configured: str | None, home: Path) -> str:
    """The configured secret, else the one kept in `home` (made on first use, mode 0600)."""
    if configured:
        return configured
    path = home.expanduser() / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret)
    return secret


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made when the session first needs one."""
    token = request.session.get(CSRF_FIELD)
    if not token:
        token = request.session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


async def check_csrf(request: Request) -> None:
    """Dependency of every route: a request that changes anything must carry the session's
    token. 403 otherwise."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = request.session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        sent = form.get(CSRF_FIELD)
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token")


__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "check_csrf",
    "csrf_token",
    "hash_password",
    "session_secret",
    "verify_password",
]
