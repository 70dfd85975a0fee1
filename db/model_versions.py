"""The model registry: registering model versions, activating one (and rolling back), the
activation history, and the list `docflow models` prints."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from db.models import ActivationKind, ModelActivation, ModelStatus, ModelVersion

# Serialises activations across processes (any fixed 64-bit number, "model" in ASCII).
ACTIVATE_MODEL_LOCK_ID = 0x6D6F64656C


def register_model_version(
    session: Session,
    name: str,
    uri: str,
    parent_id: int | None = None,
    preset: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    status: ModelStatus | str = ModelStatus.CANDIDATE,
    activated_by: str = "docflow",
) -> int:
    """Record a trained model; returns its id. status='active' activates it at once (and
    retires the previously active one), recorded as done by `activated_by`."""
    status = ModelStatus(status)
    version = ModelVersion(
        name=name,
        uri=uri,
        parent_id=parent_id,
        preset=preset,
        metrics=dict(metrics or {}),
        status=ModelStatus.CANDIDATE if status is ModelStatus.ACTIVE else status,
    )
    session.add(version)
    session.flush()
    if status is ModelStatus.ACTIVE:
        activate_model_version(
            session, version.id, by=activated_by, reason="registered as the active version"
        )
    return version.id


def activate_model_version(
    session: Session,
    version_id: int,
    *,
    by: str = "docflow",
    kind: ActivationKind | str = ActivationKind.ACTIVATE,
    reason: str | None = None,
) -> int | None:
    """Make `version_id` the active model and retire the one active before, atomically, and
    record the change in `model_activations` (who: `by`; how: `kind`; why: `reason`).
    Returns the id of the version active before (None when there was none). Activating the
    version already active changes and records nothing.

    A transaction-scoped advisory lock serialises activations: two promotions at once run one
    after the other instead of one failing on the one-active index.
    """
    session.execute(select(func.pg_advisory_xact_lock(ACTIVATE_MODEL_LOCK_ID)))
    exists = session.execute(
        select(ModelVersion.id).where(ModelVersion.id == version_id).with_for_update()
    ).first()
    if exists is None:
        raise LookupError(f"no model version {version_id}")
    previous = session.scalars(
        select(ModelVersion.id).where(ModelVersion.status == ModelStatus.ACTIVE)
    ).one_or_none()
    if previous == version_id:
        return previous
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.status == ModelStatus.ACTIVE, ModelVersion.id != version_id)
        .values(status=ModelStatus.RETIRED)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.id == version_id)
        .values(status=ModelStatus.ACTIVE, activated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    session.add(
        ModelActivation(
            model_version_id=version_id,
            previous_version_id=previous,
            kind=ActivationKind(kind),
            activated_by=by,
            reason=reason,
        )
    )
    session.flush()
    session.expire_all()  # ORM objects loaded before still say the old statuses
    return previous


def lock_model_versions(session: Session) -> None:
    """Serialise changes to `model_versions` until this transaction ends (the advisory lock
    activations take). Two runs that register the same model folder, or the shipped
    checkpoint, on first use then go one after the other, and the second finds the first's
    row instead of failing on the unique name."""
    session.execute(select(func.pg_advisory_xact_lock(ACTIVATE_MODEL_LOCK_ID)))


def active_model_version(session: Session) -> ModelVersion | None:
    """The active model version, or None when none is active yet."""
    return session.scalars(
        select(ModelVersion).where(ModelVersion.status == ModelStatus.ACTIVE)
    ).one_or_none()


def model_version_by_name(session: Session, name: str) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).where(ModelVersion.name == name)).one_or_none()


def rollback_target(session: Session) -> ModelVersion | None:
    """The version `docflow models rollback` goes back to: the one that was active before the
    active one, or None when there is none.

    The activation history is replayed as a stack: an activation or a promotion pushes its
    version, a rollback pops. So rolling back twice after activating v1, v2, v3 goes to v2,
    then v1, never back to the version just rolled back from. A version made active by hand
    (SQL, no history row) counts as pushed on top.
    """
    stack: list[int] = []
    for version_id, kind in session.execute(
        select(ModelActivation.model_version_id, ModelActivation.kind).order_by(ModelActivation.id)
    ):
        if ActivationKind(kind) is ActivationKind.ROLLBACK:
            if stack:
                stack.pop()
        else:
            stack.append(version_id)
    active = active_model_version(session)
    if active is None:
        return None
    if not stack or stack[-1] != active.id:
        stack.append(active.id)
    # The same version twice in a row (activated again after a rollback) is one step back.
    while len(stack) >= 2 and stack[-2] == active.id:
        stack.pop(-2)
    return session.get(ModelVersion, stack[-2]) if len(stack) >= 2 else None


def model_activations(session: Session, version_id: int | None = None) -> list[ModelActivation]:
    """The activation history, oldest first: every change of the active version, or only the
    ones that made `version_id` active."""
    statement = select(ModelActivation).order_by(ModelActivation.id)
    if version_id is not None:
        statement = statement.where(ModelActivation.model_version_id == version_id)
    return list(session.scalars(statement))


@dataclass(frozen=True)
class ModelVersionRow:
    """One line of `docflow models`: a version, its parent's name and its headline F1."""

    id: int
    name: str
    status: str
    parent: str | None
    created_at: dt.datetime
    activated_at: dt.datetime | None
    f1: float | None
    uri: str


def list_model_versions(session: Session) -> list[ModelVersionRow]:
    """Every model version, oldest first. The F1 is the one its metrics lead with: the holdout
    F1 of a fine-tuned version, the validation F1 of a checkpoint's metrics.json."""
    parent = aliased(ModelVersion)
    rows = session.execute(
        select(ModelVersion, parent.name)
        .outerjoin(parent, parent.id == ModelVersion.parent_id)
        .order_by(ModelVersion.id)
    )
    return [
        ModelVersionRow(
            version.id,
            version.name,
            ModelStatus(version.status).value,
            parent_name,
            version.created_at,
            version.activated_at,
            headline_f1(version.metrics),
            version.uri,
        )
        for version, parent_name in rows
    ]


def headline_f1(metrics: Mapping[str, Any]) -> float | None:
    """The F1 a version's metrics lead with (see `list_model_versions`), None when they have
    none."""
    for path in (("f1",), ("overall", "f1"), ("validation", "overall", "f1"), ("best_f1",)):
        value: Any = metrics
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, int | float):
            return float(value)
    return None
