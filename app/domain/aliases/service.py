"""Registered-model aliases: move (through the evaluation gate), read, remove, resolve
``name@alias``; deployments that follow an alias roll to the version it moves to."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Principal, Role, authorize
from app.domain.aliases import repository
from app.domain.aliases.models import ModelAlias
from app.domain.aliases.schemas import AliasRead, AliasSet
from app.domain.audit import service as audit
from app.domain.deployments import service as deployments
from app.domain.evaluations import repository as evaluations_repo
from app.domain.events.service import record_event
from app.domain.model_versions import repository as models_repo
from app.domain.model_versions.models import ModelVersion
from app.errors import Conflict, NotFound

CHECKS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}


def _read(row: ModelAlias, model: ModelVersion) -> AliasRead:
    return AliasRead(
        project_id=row.project_id,
        name=row.name,
        alias=row.alias,
        version=model.version,
        model_version_id=model.id,
        requires=row.requires,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


def gate_problem(session: Session, model: ModelVersion, requires: Mapping[str, Any]) -> str | None:
    """Why ``model`` fails ``requires`` on its latest completed evaluation, or None."""
    if not requires:
        return None
    label = f"Version {model.version} of {model.name!r}"
    evaluation = evaluations_repo.latest_completed(session, model.id)
    if evaluation is None:
        return f"{label} has no completed evaluation to check the alias's requirements against."
    for metric, bounds in sorted(requires.items()):
        value = evaluation.final_metrics.get(metric)
        for op, bound in sorted(bounds.items()):
            if value is None:
                return f"{label}: its latest evaluation has no {metric} (required {op} {bound})."
            if not CHECKS[op](float(value), float(bound)):
                return (
                    f"{label}: {metric} = {value:g} in its latest evaluation, "
                    f"which fails the requirement {metric} {op} {bound:g}."
                )
    return None


def set_alias(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    name: str,
    alias: str,
    data: AliasSet,
) -> AliasRead:
    """Point ``name@alias`` at a version if it passes the alias's requirements (409 if not)."""
    authorize(session, principal, project_id, Role.EDITOR)
    model = repository.version_of(session, project_id, name, data.version)
    if model is None:
        raise NotFound(f"Model {name!r} has no version {data.version}.")
    row = repository.get(session, project_id, name, alias, lock=True)
    requires = data.requires if data.requires is not None else (row.requires if row else {})
    problem = gate_problem(session, model, requires)
    if problem is not None:
        raise Conflict(problem, code="gate_failed")
    before = None if row is None else row.model_version_id
    if row is None:
        row = ModelAlias(project_id=project_id, name=name, alias=alias)
        session.add(row)
    row.model_version_id, row.requires = model.id, dict(requires)
    row.updated_by, row.updated_at = principal.id, utcnow()
    session.flush()
    ref = f"{name}@{alias}"
    rolled = [
        str(d.id)
        for d in repository.followers(session, project_id, ref)
        if deployments.roll_to_version(session, d.id, model.id)
    ]
    details = {
        "alias": ref,
        "from_model_version_id": str(before) if before else None,
        "to_model_version_id": str(model.id),
        "version": model.version,
        "requires": row.requires,
        "rolled_deployments": rolled,
    }
    audit.record(session, principal, "alias.move", "model_alias", ref, project_id, details)
    read = _read(row, model)
    # The subject is the version the alias now names; `data` is the alias as the API shows it.
    record_event(session, "alias.moved", project_id, model.id, read)
    return read


def _existing(session: Session, project_id: uuid.UUID, name: str, alias: str) -> ModelAlias:
    row = repository.get(session, project_id, name, alias)
    if row is None:
        raise NotFound(f"Model {name!r} has no alias {alias!r}.")
    return row


def get_alias(
    session: Session, principal: Principal, project_id: uuid.UUID, name: str, alias: str
) -> AliasRead:
    """The version ``name@alias`` points at."""
    authorize(session, principal, project_id, Role.VIEWER)
    row = _existing(session, project_id, name, alias)
    model = models_repo.get(session, row.model_version_id)
    if model is None:  # pragma: no cover - the foreign key removes the alias with it
        raise NotFound(f"Model {name!r} has no alias {alias!r}.")
    return _read(row, model)


def delete_alias(
    session: Session, principal: Principal, project_id: uuid.UUID, name: str, alias: str
) -> None:
    """Remove the alias; deployments that followed it keep serving their version."""
    authorize(session, principal, project_id, Role.EDITOR)
    row = _existing(session, project_id, name, alias)
    details = {"alias": f"{name}@{alias}", "model_version_id": str(row.model_version_id)}
    session.delete(row)
    ref = f"{name}@{alias}"
    audit.record(session, principal, "alias.delete", "model_alias", ref, project_id, details)
    record_event(session, "alias.deleted", project_id, row.model_version_id, details)
