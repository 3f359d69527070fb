"""Every query on deployments."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.deployments.models import Deployment
from app.domain.deployments.states import DeploymentStatus
from app.domain.lifecycle import StatusRepository
from app.domain.pagination import PageRequest, paginate
from app.domain.projects.models import Project

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


def get(session: Session, deployment_id: uuid.UUID) -> Deployment | None:
    return session.get(Deployment, deployment_id)


def lock_project(session: Session, project_id: uuid.UUID) -> Project | None:
    """The project row, locked until commit, so deployment names are checked one at a time.

    There is no unique index over live names (a deleted name may be reused), so creators
    serialise on the project instead. ``FOR NO KEY UPDATE`` leaves inserts of other rows that
    reference the project unblocked. Databases without row locks serialise writers anyway.
    """
    return session.scalar(
        select(Project).where(Project.id == project_id).with_for_update(key_share=True)
    )


def name_in_use(session: Session, project_id: uuid.UUID, name: str) -> bool:
    """Whether a deployment of that name exists in the project and is not deleted."""
    found = session.scalar(
        select(Deployment.id)
        .where(
            Deployment.project_id == project_id,
            Deployment.name == name,
            Deployment.status.not_in(GONE),
        )
        .limit(1)
    )
    return found is not None


def list_for_project(
    session: Session,
    project_id: uuid.UUID,
    page: PageRequest,
    status: DeploymentStatus | None = None,
) -> tuple[Sequence[Deployment], str | None]:
    stmt = select(Deployment).where(Deployment.project_id == project_id)
    if status is not None:
        stmt = stmt.where(Deployment.status == status)
    return paginate(session, stmt, Deployment.id, page)


ROWS = StatusRepository(Deployment)


def guarded_update(
    session: Session, deployment_id: uuid.UUID, expected: DeploymentStatus, values: dict[str, Any]
) -> bool:
    """``UPDATE … WHERE id = :id AND status = :expected``; False when the row moved on."""
    return ROWS.guarded_update(session, deployment_id, expected, values)


WATCHED = (
    DeploymentStatus.CREATING,
    DeploymentStatus.IN_SERVICE,
    DeploymentStatus.UPDATING,
    DeploymentStatus.DELETING,
)
SERVING = (DeploymentStatus.IN_SERVICE, DeploymentStatus.UPDATING)


def _backend_page(
    session: Session,
    backend: str,
    statuses: Sequence[DeploymentStatus],
    limit: int,
    after: uuid.UUID | None,
) -> Sequence[Deployment]:
    stmt = select(Deployment).where(
        Deployment.backend == backend, Deployment.status.in_(list(statuses))
    )
    if after is not None:
        stmt = stmt.where(Deployment.id > after)
    return session.scalars(stmt.order_by(Deployment.id).limit(limit)).all()


def list_watched(
    session: Session, backend: str, limit: int, after: uuid.UUID | None = None
) -> Sequence[Deployment]:
    """Deployments of a backend whose endpoint exists or is coming or going, by id after
    ``after``, so a poller pages through all of them."""
    return _backend_page(session, backend, WATCHED, limit, after)


def list_serving(
    session: Session, backend: str, limit: int, after: uuid.UUID | None = None
) -> Sequence[Deployment]:
    """Deployments of a backend that are serving traffic, by id after ``after``."""
    return _backend_page(session, backend, SERVING, limit, after)
