"""Evaluations: submit (row + outbox in one transaction), read, list, stop, and the one
``transition()`` every writer of an evaluation's status goes through."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.backends.naming import evaluation_job_name
from app.clock import utcnow
from app.domain.access import Principal, Role, visible
from app.domain.audit import service as audit
from app.domain.bundles import service as bundles
from app.domain.evaluations import repository
from app.domain.evaluations.models import Evaluation
from app.domain.evaluations.schemas import EvaluationCreate, EvaluationRead
from app.domain.evaluations.states import MACHINE, TERMINAL, EvaluationStatus
from app.domain.lifecycle import guarded_transition
from app.domain.model_versions import repository as models_repo
from app.domain.outbox import service as outbox
from app.domain.pagination import PageRequest
from app.domain.projects import repository as projects_repo
from app.domain.quotas import service as quotas
from app.domain.runs.logs import LogPage, read_job_logs
from app.domain.runs.validation import validate_run_spec
from app.errors import Conflict, NotFound, Unprocessable
from app.settings import Settings

S = EvaluationStatus


def create_evaluation(
    session: Session,
    principal: Principal,
    model_version_id: uuid.UUID,
    data: EvaluationCreate,
    settings: Settings,
) -> EvaluationRead:
    """Record a pending evaluation of a model version; a worker submits it after commit."""
    model = visible(
        session,
        principal,
        models_repo.get(session, model_version_id),
        Role.EDITOR,
        "Model version",
        model_version_id,
    )
    project = projects_repo.get(session, model.project_id)
    if project is None:
        raise NotFound(f"Model version {model_version_id} not found.")
    backend = project.default_backend
    if backend == "external":
        raise Unprocessable("Evaluations run on a compute backend.", code="invalid_backend")
    spec = data.run_spec()
    validate_run_spec(settings, backend, spec, project.backend_config)
    bundles.check_run_code(session, project.id, spec, backend, settings)
    quotas.check_evaluation(session, project, spec)
    evaluation = Evaluation(
        project_id=project.id,
        model_version_id=model.id,
        name=data.name,
        backend=backend,
        spec=spec.model_dump(mode="json", exclude_none=True),
        status=S.PENDING,
        final_metrics={},
        created_by=principal.id,
    )
    session.add(evaluation)
    session.flush()
    outbox.enqueue(session, outbox.EVALUATION_SUBMIT, evaluation_id=str(evaluation.id))
    details = {"name": data.name, "model_version_id": str(model.id), "backend": backend}
    audit.record(
        session, principal, "evaluation.create", "evaluation", evaluation.id, project.id, details
    )
    return EvaluationRead.model_validate(evaluation)


def _load(
    session: Session, principal: Principal, evaluation_id: uuid.UUID, need: Role
) -> Evaluation:
    found = repository.get(session, evaluation_id)
    return visible(session, principal, found, need, "Evaluation", evaluation_id)


def get_evaluation(
    session: Session, principal: Principal, evaluation_id: uuid.UUID
) -> EvaluationRead:
    """One evaluation the caller may see."""
    return EvaluationRead.model_validate(_load(session, principal, evaluation_id, Role.VIEWER))


def list_evaluations(
    session: Session, principal: Principal, model_version_id: uuid.UUID, page: PageRequest
) -> tuple[list[EvaluationRead], str | None]:
    """A model version's evaluations, newest first."""
    model = models_repo.get(session, model_version_id)
    visible(session, principal, model, Role.VIEWER, "Model version", model_version_id)
    rows, cursor = repository.list_for_model(session, model_version_id, page)
    return [EvaluationRead.model_validate(r) for r in rows], cursor


def stop_evaluation(
    session: Session, principal: Principal, evaluation_id: uuid.UUID
) -> EvaluationRead:
    """Stop an evaluation: a pending one stops at once; a submitted one via ``stopping``."""
    evaluation = _load(session, principal, evaluation_id, Role.EDITOR)
    status = S(evaluation.status)
    if status == S.STOPPING:
        return EvaluationRead.model_validate(evaluation)
    if status in TERMINAL:
        raise Conflict(f"The evaluation is already {status}.", code="evaluation_finished")
    target = S.STOPPED if status == S.PENDING else S.STOPPING
    if not transition(session, evaluation.id, status, target, status_reason="stop requested"):
        raise Conflict("The evaluation changed state meanwhile; read it and retry.", code="stale")
    if target == S.STOPPING:
        outbox.enqueue(session, outbox.EVALUATION_STOP, evaluation_id=str(evaluation.id))
    audit.record(
        session,
        principal,
        "evaluation.stop",
        "evaluation",
        evaluation.id,
        evaluation.project_id,
        {"from": str(status)},
    )
    session.refresh(evaluation)
    return EvaluationRead.model_validate(evaluation)


def transition(
    session: Session,
    evaluation_id: uuid.UUID,
    expected: EvaluationStatus,
    target: EvaluationStatus,
    **values: Any,
) -> bool:
    """Move an evaluation ``expected -> target`` if it is still ``expected``; False when stale."""
    now = utcnow()
    values = {"updated_at": now, **values}
    if target == S.RUNNING:
        values.setdefault("started_at", now)
    if target in TERMINAL:
        values.setdefault("ended_at", now)
    return guarded_transition(
        session, MACHINE, repository.ROWS, evaluation_id, S(expected), S(target), values
    )


def log_target(
    session: Session, principal: Principal, evaluation_id: uuid.UUID
) -> tuple[str, str] | None:
    """(backend, job name) whose logs the evaluation has, or None before it was submitted."""
    evaluation = _load(session, principal, evaluation_id, Role.VIEWER)
    if evaluation.status == S.PENDING:
        return None
    return evaluation.backend, evaluation_job_name(evaluation.id)


def read_logs(
    session: Session,
    principal: Principal,
    evaluation_id: uuid.UUID,
    cursor: str | None,
    limit: int,
) -> LogPage:
    """The evaluation job's log lines after ``cursor``, oldest first."""
    return read_job_logs(session, log_target(session, principal, evaluation_id), cursor, limit)
