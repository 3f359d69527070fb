"""Training runs: create (run + outbox row in one transaction), read, stop, and the one
``transition()`` every writer of a run's status goes through."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.backends.naming import job_name
from app.clock import utcnow
from app.domain.access import Principal, Role, authorize, visible
from app.domain.audit import service as audit
from app.domain.bundles import service as bundles
from app.domain.events import subjects as events
from app.domain.lifecycle import guarded_transition
from app.domain.outbox import service as outbox
from app.domain.pagination import PageRequest
from app.domain.projects import repository as projects_repo
from app.domain.projects.models import Project
from app.domain.quotas import service as quotas
from app.domain.runs import external, repository
from app.domain.runs.models import TrainingRun
from app.domain.runs.schemas import EXTERNAL, RunCreate, RunRead, masked_spec
from app.domain.runs.states import MACHINE, TERMINAL, RunStatus
from app.domain.runs.validation import validate_run_spec
from app.errors import Conflict, NotFound
from app.settings import Settings


def create_run(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    data: RunCreate,
    settings: Settings,
) -> RunRead:
    """Record a pending run and its submit request; a worker submits it after commit."""
    authorize(session, principal, project_id, Role.EDITOR)
    project = projects_repo.get(session, project_id)
    if project is None:
        raise NotFound(f"Project {project_id} not found.")
    backend = data.backend or project.default_backend
    if backend == EXTERNAL:
        return _create_tracked_run(session, principal, project, data)
    validate_run_spec(settings, backend, data.spec, project.backend_config)
    bundles.check_run_code(session, project_id, data.spec, backend, settings)
    quotas.check_run(session, project, data.spec)
    run = TrainingRun(
        project_id=project_id,
        name=data.name,
        backend=backend,
        spec=data.spec.model_dump(mode="json", exclude_none=True),
        status=RunStatus.PENDING,
        final_metrics={},
        created_by=principal.id,
    )
    session.add(run)
    session.flush()
    outbox.enqueue(session, outbox.RUN_SUBMIT, run_id=str(run.id))
    events.run_created(session, run.id)
    audit.record(
        session,
        principal,
        "run.create",
        "run",
        run.id,
        project_id,
        {"name": run.name, "backend": backend},
    )
    return RunRead.model_validate(run)


def _create_tracked_run(
    session: Session, principal: Principal, project: Project, data: RunCreate
) -> RunRead:
    """A run tracked from the caller's code: ``running`` at once, no job, no outbox row.

    It counts against the active-run quota like any run; it costs nothing, so the budget
    refuses it only when the project is over budget already."""
    run = external.tracked_run(project.id, data, principal.id)
    quotas.check_run(session, project, data.spec)
    session.add(run)
    session.flush()
    details = {"name": run.name, "backend": EXTERNAL}
    events.run_created(session, run.id)
    audit.record(session, principal, "run.create", "run", run.id, project.id, details)
    return RunRead.model_validate(run)


def _load(session: Session, principal: Principal, run_id: uuid.UUID, need: Role) -> TrainingRun:
    return visible(session, principal, repository.get(session, run_id), need, "Run", run_id)


def get_run(session: Session, principal: Principal, run_id: uuid.UUID) -> RunRead:
    """One run; viewers see its environment's keys with the values masked."""
    run = repository.get(session, run_id)
    missing = NotFound(f"Run {run_id} not found.")
    if run is None:
        raise missing
    role = authorize(session, principal, run.project_id, Role.VIEWER, missing=missing)
    read = RunRead.model_validate(run)
    if role == Role.VIEWER:
        read.spec = masked_spec(read.spec)
    return read


def list_runs(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    page: PageRequest,
    status: RunStatus | None = None,
    backend: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> tuple[list[RunRead], str | None]:
    role = authorize(session, principal, project_id, Role.VIEWER)
    rows, cursor = repository.list_for_project(
        session, project_id, page, status, backend, created_after, created_before
    )
    if role == Role.VIEWER:  # environment values are for editors and owners
        for row in rows:
            row["spec"] = masked_spec(row["spec"])
    return [RunRead.model_validate(r) for r in rows], cursor


def stop_run(session: Session, principal: Principal, run_id: uuid.UUID) -> RunRead:
    """Stop a run: a pending one stops at once; a submitted one goes through ``stopping``."""
    run = _load(session, principal, run_id, Role.EDITOR)
    status = RunStatus(run.status)
    if status == RunStatus.STOPPING:
        return RunRead.model_validate(run)
    if status in TERMINAL:
        raise Conflict(f"The run is already {status}.", code="run_finished")
    target = RunStatus.STOPPED if status == RunStatus.PENDING else RunStatus.STOPPING
    if not transition(session, run.id, status, target, status_reason="stop requested"):
        raise Conflict("The run changed state meanwhile; read it and retry.", code="stale")
    if target == RunStatus.STOPPING and run.backend == EXTERNAL:
        # No job to wait for: a tracked run passes through stopping to stopped at once.
        transition(session, run.id, target, RunStatus.STOPPED, status_reason="stop requested")
    elif target == RunStatus.STOPPING:
        outbox.enqueue(session, outbox.RUN_STOP, run_id=str(run.id))
    audit.record(
        session, principal, "run.stop", "run", run.id, run.project_id, {"from": str(status)}
    )
    session.refresh(run)
    return RunRead.model_validate(run)


def transition(
    session: Session,
    run_id: uuid.UUID,
    expected: RunStatus,
    target: RunStatus,
    **values: Any,
) -> bool:
    """Move a run ``expected -> target`` if it is still ``expected``; False when stale.

    API stop, pollers and backends all write status through here, so the state machine
    and the timestamps stay consistent.
    """
    now = utcnow()
    values = {"updated_at": now, **values}
    if target == RunStatus.RUNNING:
        values.setdefault("started_at", now)
    if target in TERMINAL:
        values.setdefault("ended_at", now)
    moved = guarded_transition(session, MACHINE, repository.ROWS, run_id, expected, target, values)
    if moved:
        events.run_status(session, run_id, target)
    return moved


def log_target(session: Session, principal: Principal, run_id: uuid.UUID) -> tuple[str, str] | None:
    """(backend, job name) whose logs the run has, or None before it was submitted."""
    run = _load(session, principal, run_id, Role.VIEWER)
    if run.status == RunStatus.PENDING or run.backend == EXTERNAL:
        return None  # a tracked run's log stays on the caller's machine
    return run.backend, job_name(run.id)
