"""Events for status changes: the type a new status means, and the object as the API shows it.

The state machines call these after a guarded update succeeded, so the event commits or rolls
back with the change itself.
"""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlalchemy.orm import Session

from app.domain.deployments import repository as deployments_repo
from app.domain.deployments.schemas import DeploymentRead
from app.domain.deployments.states import DeploymentStatus
from app.domain.events.service import record_event
from app.domain.runs import repository as runs_repo
from app.domain.runs.schemas import RunRead, masked_spec
from app.domain.runs.states import RunStatus

T = TypeVar("T")

RUN_EVENTS: dict[RunStatus, str] = {
    RunStatus.SUBMITTING: "run.submitted",
    RunStatus.RUNNING: "run.running",
    RunStatus.COMPLETED: "run.completed",
    RunStatus.FAILED: "run.failed",
    RunStatus.STOPPED: "run.stopped",
}
DEPLOYMENT_EVENTS: dict[DeploymentStatus, str] = {
    DeploymentStatus.IN_SERVICE: "deployment.in_service",
    DeploymentStatus.UPDATING: "deployment.updating",
    DeploymentStatus.FAILED: "deployment.failed",
    DeploymentStatus.DELETED: "deployment.deleted",
}


def run_view(session: Session, run_id: uuid.UUID) -> RunRead | None:
    """The run as a viewer sees it (environment values masked): events go to every member."""
    run = _fresh(session, runs_repo.get(session, run_id))
    if run is None:
        return None
    read = RunRead.model_validate(run)
    read.spec = masked_spec(read.spec)
    return read


def deployment_view(session: Session, deployment_id: uuid.UUID) -> DeploymentRead | None:
    deployment = _fresh(session, deployments_repo.get(session, deployment_id))
    return None if deployment is None else DeploymentRead.model_validate(deployment)


def _fresh(session: Session, row: T | None) -> T | None:
    """``row`` as the database has it now: a guarded UPDATE does not touch the identity map."""
    if row is not None:
        session.flush()
        session.refresh(row)
    return row


def run_created(session: Session, run_id: uuid.UUID) -> None:
    """``run.created``, whatever status the run starts in."""
    _record(session, "run.created", run_view(session, run_id))


def run_status(session: Session, run_id: uuid.UUID, status: RunStatus) -> None:
    """Record the event a run's new ``status`` means, if any."""
    if event_type := RUN_EVENTS.get(status):
        _record(session, event_type, run_view(session, run_id))


def deployment_created(session: Session, deployment_id: uuid.UUID) -> None:
    _record(session, "deployment.created", deployment_view(session, deployment_id))


def deployment_status(session: Session, deployment_id: uuid.UUID, status: DeploymentStatus) -> None:
    """Record the event a deployment's new ``status`` means, if any."""
    if event_type := DEPLOYMENT_EVENTS.get(status):
        _record(session, event_type, deployment_view(session, deployment_id))


def _record(session: Session, event_type: str, read: RunRead | DeploymentRead | None) -> None:
    if read is not None:
        record_event(session, event_type, read.project_id, read.id, read)


def deployment_scaled(
    session: Session, deployment_id: uuid.UUID, previous: int, reason: str, mode: str
) -> None:
    """``deployment.scaled``: the optimizer set a new desired count, and why."""
    read = deployment_view(session, deployment_id)
    if read is not None:
        data = {
            **read.model_dump(mode="json"),
            "previous_instances": previous,
            "reason": reason,
            "mode": mode,
        }
        record_event(session, "deployment.scaled", read.project_id, read.id, data)
