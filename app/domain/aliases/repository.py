"""Every query on model aliases."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.aliases.models import ModelAlias
from app.domain.deployments.models import Deployment
from app.domain.model_versions.models import ModelVersion


def get(
    session: Session, project_id: uuid.UUID, name: str, alias: str, lock: bool = False
) -> ModelAlias | None:
    stmt = select(ModelAlias).where(
        ModelAlias.project_id == project_id, ModelAlias.name == name, ModelAlias.alias == alias
    )
    return session.scalar(stmt.with_for_update() if lock else stmt)


def version_of(
    session: Session, project_id: uuid.UUID, name: str, version: int
) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project_id,
            ModelVersion.name == name,
            ModelVersion.version == version,
        )
    )


def followers(session: Session, project_id: uuid.UUID, ref: str) -> Sequence[Deployment]:
    """Deployments of the project that follow ``name@alias`` and still exist."""
    return session.scalars(
        select(Deployment).where(
            Deployment.project_id == project_id,
            Deployment.follows == ref,
            Deployment.status.not_in(("deleting", "deleted")),
        )
    ).all()
