"""The aggregate queries behind the scrape-time gauges."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.deployments.models import Deployment
from app.domain.outbox.models import OutboxMessage
from app.domain.runs.models import TrainingRun


def runs_by_status(session: Session) -> dict[str, int]:
    stmt = select(TrainingRun.status, func.count()).group_by(TrainingRun.status)
    return {str(status): int(count) for status, count in session.execute(stmt)}


def deployments_by_status(session: Session) -> dict[str, tuple[int, int, int]]:
    """status -> (deployments, desired instances, current instances)."""
    stmt = select(
        Deployment.status,
        func.count(),
        func.coalesce(func.sum(Deployment.desired_instances), 0),
        func.coalesce(func.sum(Deployment.current_instances), 0),
    ).group_by(Deployment.status)
    return {str(row[0]): (int(row[1]), int(row[2]), int(row[3])) for row in session.execute(stmt)}


def outbox_backlog(session: Session) -> tuple[int, datetime | None]:
    """Unprocessed messages and when the oldest was written."""
    stmt = select(func.count(), func.min(OutboxMessage.created_at)).where(
        OutboxMessage.processed_at.is_(None)
    )
    count, oldest = session.execute(stmt).one()
    return int(count), oldest
