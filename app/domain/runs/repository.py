"""Every query on training runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.domain.pagination import PageRequest, paginate
from app.domain.runs.models import TrainingRun
from app.domain.runs.states import ACTIVE, RunStatus


def get(session: Session, run_id: uuid.UUID) -> TrainingRun | None:
    return session.get(TrainingRun, run_id)


def list_for_project(
    session: Session,
    project_id: uuid.UUID,
    page: PageRequest,
    status: RunStatus | None = None,
    backend: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> tuple[Sequence[TrainingRun], str | None]:
    stmt = select(TrainingRun).where(TrainingRun.project_id == project_id)
    if status is not None:
        stmt = stmt.where(TrainingRun.status == status)
    if backend is not None:
        stmt = stmt.where(TrainingRun.backend == backend)
    if created_after is not None:
        stmt = stmt.where(TrainingRun.created_at >= created_after)
    if created_before is not None:
        stmt = stmt.where(TrainingRun.created_at < created_before)
    return paginate(session, stmt, TrainingRun.id, page)


def count_active(session: Session, project_id: uuid.UUID) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(TrainingRun)
            .where(TrainingRun.project_id == project_id, TrainingRun.status.in_(list(ACTIVE)))
        )
        or 0
    )


def guarded_update(
    session: Session, run_id: uuid.UUID, expected: RunStatus, values: dict[str, Any]
) -> bool:
    """``UPDATE … WHERE id = :id AND status = :expected``; False when the row moved on."""
    result = session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run_id, TrainingRun.status == expected)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
