"""Every query on deployments."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.deployments.models import Deployment

GONE = ("deleted",)


def count_live(session: Session, project_id: uuid.UUID) -> int:
    """Deployments of the project that are not deleted."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Deployment)
            .where(Deployment.project_id == project_id, Deployment.status.not_in(GONE))
        )
        or 0
    )
