"""Model versions: register an artifact, read, list, and register a finished run's model."""

from __future__ import annotations

import math
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.access import Principal, Role, authorize, visible
from app.domain.aliases.resolve import resolve
from app.domain.audit import service as audit
from app.domain.evaluations import repository as evaluations_repo
from app.domain.events.service import record_event
from app.domain.model_versions import repository
from app.domain.model_versions.models import ModelVersion
from app.domain.model_versions.schemas import ModelVersionCreate, ModelVersionRead
from app.domain.pagination import PageRequest
from app.domain.projects import repository as projects_repo
from app.domain.runs.models import TrainingRun
from app.domain.runs.validation import validate_artifact_uri
from app.errors import Conflict, NotFound, Unprocessable
from app.settings import Settings

# Concurrent registrations of one name race for the same next number; the loser retries.
VERSION_ATTEMPTS = 5


def _insert_next_version(session: Session, **fields: Any) -> tuple[ModelVersion, bool]:
    """Insert with the next free version number of (project, name); False if a run's existed."""
    run_id = fields.get("source_run_id")
    for _ in range(VERSION_ATTEMPTS):
        version = repository.next_version(session, fields["project_id"], fields["name"])
        model = ModelVersion(version=version, **fields)
        try:
            with session.begin_nested():
                session.add(model)
                session.flush()
        except IntegrityError:
            # A concurrent call for the same run may have won the unique source_run_id.
            if run_id is not None and (won := repository.get_by_source_run(session, run_id)):
                return won, False
            continue
        read = ModelVersionRead.model_validate(model)
        record_event(session, "model_version.created", model.project_id, model.id, read)
        return model, True
    raise Conflict(
        "Too many concurrent registrations of this model name; retry.", code="version_race"
    )


def register_model(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    data: ModelVersionCreate,
    settings: Settings,
) -> ModelVersionRead:
    """Register an existing artifact as the next version of ``data.name``."""
    authorize(session, principal, project_id, Role.EDITOR)
    project = projects_repo.get(session, project_id)
    if project is None:
        raise NotFound(f"Project {project_id} not found.")
    validate_artifact_uri(settings, data.artifact_uri, project.backend_config)
    model, _ = _insert_next_version(
        session,
        project_id=project_id,
        name=data.name,
        artifact_uri=data.artifact_uri,
        framework=data.framework,
        metrics=dict(data.metrics),
        created_by=principal.id,
    )
    audit.record(
        session,
        principal,
        "model_version.create",
        "model_version",
        model.id,
        project_id,
        {"name": model.name, "version": model.version},
    )
    return ModelVersionRead.model_validate(model)


def _load(
    session: Session, principal: Principal, model_version_id: uuid.UUID, need: Role
) -> ModelVersion:
    """The model version if the caller may see it; another project's answers as missing."""
    model = repository.get(session, model_version_id)
    return visible(session, principal, model, need, "Model version", model_version_id)


def get_model_version(
    session: Session, principal: Principal, model_version_id: uuid.UUID
) -> ModelVersionRead:
    """One model version the caller may see."""
    return ModelVersionRead.model_validate(_load(session, principal, model_version_id, Role.VIEWER))


def model_version_of_run(
    session: Session, principal: Principal, run_id: uuid.UUID
) -> ModelVersionRead | None:
    """The model version a run produced, if any and if the caller may see it."""
    model = repository.get_by_source_run(session, run_id)
    if model is None:
        return None
    return ModelVersionRead.model_validate(
        visible(session, principal, model, Role.VIEWER, "Model version", model.id)
    )


def list_model_versions(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    page: PageRequest,
    name: str | None = None,
    sort: str | None = None,
) -> tuple[list[ModelVersionRead], str | None]:
    """A project's model versions, newest first, optionally of one name (``name@alias``: the
    version it points at), or sorted by a metric of their latest completed evaluation."""
    authorize(session, principal, project_id, Role.VIEWER)
    if name is not None and "@" in name:
        return [ModelVersionRead.model_validate(resolve(session, project_id, name))], None
    if sort is not None:
        return _by_evaluation_metric(session, project_id, page, name, sort), None
    rows, cursor = repository.list_for_project(session, project_id, page, name)
    return [ModelVersionRead.model_validate(r) for r in rows], cursor


def _by_evaluation_metric(
    session: Session, project_id: uuid.UUID, page: PageRequest, name: str | None, sort: str
) -> list[ModelVersionRead]:
    """The best ``page.limit`` versions of ``name`` by ``sort`` (``metric``: ascending,
    ``-metric``: descending); versions whose latest evaluation lacks it come last."""
    if name is None:
        raise Unprocessable("sort needs name: versions are compared within one model.")
    metric, descending = sort.removeprefix("-"), sort.startswith("-")
    rows = repository.all_of_name(session, project_id, name)
    latest = evaluations_repo.latest_completed_many(session, [r.id for r in rows])

    def key(row: ModelVersion) -> tuple[bool, float]:
        evaluation = latest.get(row.id)
        value = evaluation.final_metrics.get(metric) if evaluation else None
        if value is None or not math.isfinite(value):
            return True, 0.0
        return False, -value if descending else value

    ranked = sorted(rows, key=key)[: page.limit]
    return [ModelVersionRead.model_validate(r) for r in ranked]


def _finite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    # Backends report what the log regexes matched; only finite numbers survive JSON.
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def create_from_run(session: Session, run: TrainingRun) -> ModelVersionRead:
    """Register a completed run's artifact; calling it again for that run returns the same."""
    existing = repository.get_by_source_run(session, run.id)
    if existing is not None:
        return ModelVersionRead.model_validate(existing)
    if not run.artifact_uri:
        raise Conflict(f"Run {run.id} has no artifact to register.", code="no_artifact")
    framework = run.spec.get("framework")
    model, created = _insert_next_version(
        session,
        project_id=run.project_id,
        name=str(run.spec.get("model_name") or run.name),
        artifact_uri=run.artifact_uri,
        framework=framework if isinstance(framework, str) else None,
        metrics=_finite_metrics(run.final_metrics or {}),
        source_run_id=run.id,
        created_by=run.created_by,
    )
    if not created:
        return ModelVersionRead.model_validate(model)
    audit.record(
        session,
        None,
        "model_version.create",
        "model_version",
        model.id,
        run.project_id,
        {"name": model.name, "version": model.version, "source_run_id": str(run.id)},
    )
    return ModelVersionRead.model_validate(model)
