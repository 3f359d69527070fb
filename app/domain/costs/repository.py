"""Cost queries: instance-seconds per instance type, summed in the database where billed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.deployments.models import Deployment
from app.domain.runs.models import TrainingRun

Unbilled = tuple[str | None, datetime | None, datetime | None, int | None]


def billed_run_seconds(session: Session, project_id: uuid.UUID) -> dict[str, float]:
    """Billed instance-seconds of a project's runs, per instance type."""
    instance_type = TrainingRun.spec["instance_type"].as_string()
    rows = session.execute(
        select(instance_type, func.sum(TrainingRun.billable_seconds))
        .where(TrainingRun.project_id == project_id, TrainingRun.billable_seconds.is_not(None))
        .group_by(instance_type)
    ).all()
    return {str(t or "local"): float(s or 0.0) for t, s in rows}


def unbilled_started_runs(session: Session, project_id: uuid.UUID) -> list[Unbilled]:
    """Started runs the backend has not billed yet: (instance type, start, end, count)."""
    rows = session.execute(
        select(
            TrainingRun.spec["instance_type"].as_string(),
            TrainingRun.started_at,
            TrainingRun.ended_at,
            TrainingRun.spec["instance_count"].as_integer(),
        ).where(
            TrainingRun.project_id == project_id,
            TrainingRun.billable_seconds.is_(None),
            TrainingRun.started_at.is_not(None),
        )
    ).all()
    return [(t, start, end, count) for t, start, end, count in rows]


def deployments_of(session: Session, project_id: uuid.UUID) -> Sequence[Deployment]:
    return session.scalars(select(Deployment).where(Deployment.project_id == project_id)).all()
