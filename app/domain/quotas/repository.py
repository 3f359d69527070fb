"""The queries behind budgets and quotas: work in flight and capacity held, per project."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.deployments.models import Deployment
from app.domain.deployments.states import DeploymentStatus
from app.domain.runs.models import TrainingRun
from app.domain.runs.states import RunStatus

# Statuses whose deployment holds (or is about to hold) its desired instances.
HOLDING = (DeploymentStatus.CREATING, DeploymentStatus.IN_SERVICE, DeploymentStatus.UPDATING)
# Runs that will still spend: a stopping run is on its way out and projects nothing more.
SPENDING = (RunStatus.PENDING, RunStatus.SUBMITTING, RunStatus.RUNNING)

RunProjection = tuple[str | None, int | None, int | None, datetime | None]


def runs_to_come(session: Session, project_id: uuid.UUID) -> list[RunProjection]:
    """(instance type, count, max runtime s, started at) of the project's runs still spending."""
    rows = session.execute(
        select(
            TrainingRun.spec["instance_type"].as_string(),
            TrainingRun.spec["instance_count"].as_integer(),
            TrainingRun.spec["max_runtime_seconds"].as_integer(),
            TrainingRun.started_at,
        ).where(TrainingRun.project_id == project_id, TrainingRun.status.in_(list(SPENDING)))
    ).all()
    return [(t, c, m, s) for t, c, m, s in rows]


def held_capacity(
    session: Session, project_id: uuid.UUID, exclude: uuid.UUID | None = None
) -> list[tuple[str, int]]:
    """(instance type, desired instances) of the project's live deployments but ``exclude``."""
    stmt = select(Deployment.instance_type, Deployment.desired_instances).where(
        Deployment.project_id == project_id, Deployment.status.in_(list(HOLDING))
    )
    if exclude is not None:
        stmt = stmt.where(Deployment.id != exclude)
    return [(t, n) for t, n in session.execute(stmt).all()]


def desired_total(session: Session, project_id: uuid.UUID, exclude: uuid.UUID | None = None) -> int:
    """Desired instances summed over the project's live deployments but ``exclude``."""
    stmt = select(func.coalesce(func.sum(Deployment.desired_instances), 0)).where(
        Deployment.project_id == project_id, Deployment.status.in_(list(HOLDING))
    )
    if exclude is not None:
        stmt = stmt.where(Deployment.id != exclude)
    return int(session.scalar(stmt) or 0)
