"""What the embedded services read from the settings, as a protocol: the flows' `Settings` has
it all, and any object with these attributes will do."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Secret(Protocol):
    """A value kept out of every repr and log line (pydantic's `SecretStr`)."""

    def get_secret_value(self) -> str: ...


class ServiceSettings(Protocol):
    home: Path
    database_url: Secret
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: Secret
    s3_secure: bool

    @property
    def masked_database_url(self) -> str:
        """The database URL with its password hidden, for printing."""
        ...
