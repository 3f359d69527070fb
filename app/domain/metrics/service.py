"""Metric points of runs and deployments: batch ingest and history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Principal, Role, authorize
from app.domain.audit import service as audit
from app.domain.deployments import repository as deployments_repo
from app.domain.deployments.models import Deployment
from app.domain.metrics import repository
from app.domain.metrics.schemas import MetricBatch, MetricPointRead, MetricsAccepted
from app.domain.pagination import PageRequest
from app.domain.runs import repository as runs_repo
from app.domain.runs.models import TrainingRun
from app.errors import NotFound

SubjectType = Literal["run", "deployment"]


def _subject_project(
    session: Session,
    principal: Principal,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    need: Role,
) -> uuid.UUID:
    """The subject's project, once the caller is allowed ``need`` on it."""
    subject: TrainingRun | Deployment | None
    if subject_type == "run":
        missing = NotFound(f"Run {subject_id} not found.")
        subject = runs_repo.get(session, subject_id)
    else:
        missing = NotFound(f"Deployment {subject_id} not found.")
        subject = deployments_repo.get(session, subject_id)
    if subject is None:
        raise missing
    authorize(session, principal, subject.project_id, need, missing=missing)
    return subject.project_id


def ingest(
    session: Session,
    principal: Principal,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    batch: MetricBatch,
) -> MetricsAccepted:
    """Store a whole batch of points in one insert; the batch was validated as a whole."""
    project_id = _subject_project(session, principal, subject_type, subject_id, Role.EDITOR)
    received = utcnow()
    repository.add_many(
        session,
        [
            {
                "project_id": project_id,
                "subject_type": subject_type,
                "subject_id": subject_id,
                "name": point.name,
                "step": point.step,
                "timestamp": point.timestamp or received,
                "value": point.value,
            }
            for point in batch.points
        ],
    )
    audit.record(
        session,
        principal,
        "metrics.ingest",
        subject_type,
        subject_id,
        project_id,
        {"count": len(batch.points)},
    )
    return MetricsAccepted(accepted=len(batch.points))


def history(
    session: Session,
    principal: Principal,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    page: PageRequest,
    name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[MetricPointRead], str | None]:
    """A subject's points, oldest first, optionally of one name and within a time window."""
    _subject_project(session, principal, subject_type, subject_id, Role.VIEWER)
    rows, cursor = repository.history(session, subject_type, subject_id, page, name, since, until)
    return [MetricPointRead.model_validate(r) for r in rows], cursor
