"""Every query on model versions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.model_versions.models import ModelVersion
from app.domain.pagination import PageRequest, paginate


def get(session: Session, model_version_id: uuid.UUID) -> ModelVersion | None:
    return session.get(ModelVersion, model_version_id)


def get_by_source_run(session: Session, run_id: uuid.UUID) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.source_run_id == run_id))


def next_version(session: Session, project_id: uuid.UUID, name: str) -> int:
    """One past the highest version of ``name`` in the project (1 for a new name)."""
    highest = session.scalar(
        select(func.max(ModelVersion.version)).where(
            ModelVersion.project_id == project_id, ModelVersion.name == name
        )
    )
    return (highest or 0) + 1


def list_for_project(
    session: Session, project_id: uuid.UUID, page: PageRequest, name: str | None = None
) -> tuple[Sequence[ModelVersion], str | None]:
    stmt = select(ModelVersion).where(ModelVersion.project_id == project_id)
    if name is not None:
        stmt = stmt.where(ModelVersion.name == name)
    return paginate(session, stmt, ModelVersion.id, page)


MAX_VERSIONS_SORTED = 10_000


def all_of_name(session: Session, project_id: uuid.UUID, name: str) -> Sequence[ModelVersion]:
    """The versions of one model (newest first), for ranking by their evaluations."""
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.project_id == project_id, ModelVersion.name == name)
        .order_by(ModelVersion.version.desc())
        .limit(MAX_VERSIONS_SORTED)
    ).all()
