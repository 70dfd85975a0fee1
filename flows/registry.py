"""The model registry: which registered model version a run extracts with, and where its
weights are on this machine."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.clients import object_store, sessions
from flows.retries import TASK_OPTIONS
from flows.settings import Settings, get_settings


@dataclass(frozen=True)
class ModelRef:
    """A registered model version and the local folder its weights are loaded from."""

    id: int
    name: str
    uri: str
    local_dir: str


@task(name="resolve-model", **TASK_OPTIONS)
def resolve_model(model_version: str | None = None) -> ModelRef:
    """The model version to extract with, registered in `model_versions` and available locally.

    `model_version` is a registered version's name, or a folder holding a saved model (it is
    registered on first use, as a candidate). None means the active version; when there is
    none yet, the checkpoint shipped with the package is registered and made active.
    """
    from db.model_versions import (
        active_model_version,
        lock_model_versions,
        model_version_by_name,
        register_model_version,
    )
    from db.models import ModelStatus
    from db.session import session_scope

    with session_scope(sessions()) as session:
        lock_model_versions(session)  # runs started together may both register on first use
        if model_version is None:
            version_row = active_model_version(session)
            if version_row is None:
                from docformer.checkpoints import DEFAULT_MODEL_NAME, check_model_dir

                shipped = check_model_dir()  # says what is missing when it is not installed
                version_id = register_model_version(
                    session,
                    DEFAULT_MODEL_NAME,
                    str(shipped),
                    preset="tiny",
                    metrics=_read_metrics(shipped),
                    status=ModelStatus.ACTIVE,
                )
                get_run_logger().info("registered the shipped checkpoint %s as active", shipped)
                return ModelRef(version_id, DEFAULT_MODEL_NAME, str(shipped), str(shipped))
        elif Path(model_version).is_dir():
            folder = Path(model_version).resolve()
            version_row = _version_by_uri(session, str(folder))
            if version_row is None:
                name = folder.name
                if model_version_by_name(session, name) is not None:
                    name = f"{name}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"
                version_id = register_model_version(
                    session, name, str(folder), metrics=_read_metrics(folder)
                )
                return ModelRef(version_id, name, str(folder), str(folder))
        else:
            version_row = model_version_by_name(session, model_version)
            if version_row is None:
                raise LookupError(f"no model version named {model_version!r}")
        ref = (version_row.id, version_row.name, version_row.uri)
    return ModelRef(*ref, str(local_model_dir(ref[1], ref[2])))


def _version_by_uri(session: Session, uri: str):
    from db.models import ModelVersion

    return session.scalars(
        select(ModelVersion).where(ModelVersion.uri == uri).order_by(ModelVersion.id).limit(1)
    ).one_or_none()


def _read_metrics(folder: Path) -> dict[str, Any]:
    import json

    path = folder / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def local_model_dir(name: str, uri: str, settings: Settings | None = None) -> Path:
    """A local folder with the weights of the version stored at `uri`: the folder itself for a
    local path, else a copy downloaded once per machine under $DOCFLOW_HOME/models/<name>."""
    if not uri.startswith("s3://"):
        return Path(uri)
    settings = settings or get_settings()
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    target = Path(settings.home).expanduser().resolve() / "models" / name
    done = target / ".complete"
    if not done.is_file():
        object_store(settings).download_folder(bucket, prefix, target)
        done.write_text(uri)
    return target
