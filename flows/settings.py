"""One settings object for the whole system, read from `DOCFLOW_*` variables and `.env`.

Secrets are `SecretStr`, so they print as `**********` in every repr, log line and error;
`database_url` may carry a password and is masked the same way (`masked_database_url`).
A secret may also be kept in a Prefect Secret block instead of the environment: set it to
`prefect-secret:<block name>` and the flows read the block when they connect (`reveal`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

# Ports of the embedded default; chosen away from the usual 5432/9000 so a developer's own
# PostgreSQL or MinIO does not collide with it, and below Linux's ephemeral range (32768-60999,
# /proc/sys/net/ipv4/ip_local_port_range), where any outgoing connection may be given the port
# for a while and make `docflow up` refuse to start.
EMBEDDED_PG_PORT = 25432
EMBEDDED_S3_PORT = 28333
# A secret's value that names a Prefect Secret block holding the real value.
PREFECT_SECRET_PREFIX = "prefect-secret:"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCFLOW_", env_file=".env", extra="ignore")

    home: Path = Field(Path(".docflow"), description="state directory of the embedded default")
    database_url: SecretStr = SecretStr(
        f"postgresql+psycopg2://postgres@127.0.0.1:{EMBEDDED_PG_PORT}/docflow"
    )
    s3_endpoint: str = f"127.0.0.1:{EMBEDDED_S3_PORT}"
    s3_access_key: str = "docflow"
    s3_secret_key: SecretStr = SecretStr("docflow-embedded-secret")
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    inbox_bucket: str = "docflow-inbox"
    inbox_prefix: str = ""
    # Buckets a `docflow.document.uploaded` event may name besides the inbox, comma-separated.
    # An event naming any other bucket is refused: events are not trusted to choose what is read.
    upload_buckets: str = Field(
        "", description="comma-separated buckets upload events may name (the inbox always)"
    )
    artifact_bucket: str = "docflow-artifacts"
    # Each digitized document's searchable PDF, ALTO and hOCR (flows/archive.py).
    archive_bucket: str = "docflow-archive"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    ocr_workers: int = Field(2, ge=1)
    extract_batch_size: int = Field(8, ge=1)
    chunk_size: int = Field(8, ge=1, description="documents per mapped task")
    claim_ttl_seconds: int = Field(
        3600, ge=10, description="a crashed job's claims expire after this"
    )
    max_document_bytes: int = Field(100 * 1024 * 1024, ge=1)
    # A field judged on fewer holdout documents than this cannot tell a better version from
    # luck: at 20, one value is 5 points of that field's F1, already above the usual margin.
    finetune_min_holdout: int = Field(
        20, ge=0, description="labelled holdout documents per compared field to promote"
    )
    # The review application (`docflow review`). Without a secret key one is made on first use
    # and kept in `home`; set one when several application processes serve the same reviewers.
    review_secret_key: SecretStr | None = None
    review_audit_rate: float = Field(
        0.02, ge=0, le=1, description="share of confident fields drawn for review as an audit"
    )
    review_lease_seconds: int = Field(600, ge=10, description="how long an item stays leased")
    # Behind a TLS-terminating proxy: the session cookie is then sent over HTTPS only.
    review_https_only: bool = False
    project_dir: Path | None = Field(
        None, description="checkout a Prefect worker runs the flows from (prefect.yaml's pull step)"
    )

    @property
    def allowed_upload_buckets(self) -> frozenset[str]:
        """The buckets an upload event may name: the inbox and `DOCFLOW_UPLOAD_BUCKETS`."""
        named = (name.strip() for name in self.upload_buckets.split(","))
        return frozenset([self.inbox_bucket, *filter(None, named)])

    @property
    def masked_database_url(self) -> str:
        url = self.database_url.get_secret_value()
        if url.startswith(PREFECT_SECRET_PREFIX):
            return url  # the block's name, not its value
        parsed = make_url(url)
        # libpq also takes the password as a parameter (`?password=`): hide it there too.
        hidden = {name: "***" for name in parsed.query if name.lower() == "password"}
        return parsed.update_query_dict(hidden).render_as_string(hide_password=True)

    def __repr_args__(self):  # keep the URL's password out of repr, not just the whole field
        for name, value in super().__repr_args__():
            yield name, (self.masked_database_url if name == "database_url" else value)


def reveal(secret: SecretStr) -> str:
    """The value of a secret setting: itself, or the value of the Prefect Secret block it names
    (`prefect-secret:<block name>`). Prefect is imported only for a block reference, since the
    command line must set Prefect's environment before anything imports it."""
    value = secret.get_secret_value()
    if not value.startswith(PREFECT_SECRET_PREFIX):
        return value
    from prefect.blocks.system import Secret

    return str(Secret.load(value.removeprefix(PREFECT_SECRET_PREFIX)).get())


@lru_cache
def get_settings() -> Settings:
    return Settings()
