"""Every query on training runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.lifecycle import StatusRepository
from app.domain.pagination import PageRequest, decode_cursor, encode_cursor
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
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the project's runs, newest first, as plain column dicts.

    Plain rows, not ORM objects: a list page is read-only, and building 50 tracked instances
    cost more than the query (half the request time at 100k runs). Status filters page through
    the (project_id, status, id) index; the others filter the (project_id, id) walk.
    """
    stmt = select(TrainingRun.__table__).where(TrainingRun.project_id == project_id)
    if status is not None:
        stmt = stmt.where(TrainingRun.status == status)
    if backend is not None:
        stmt = stmt.where(TrainingRun.backend == backend)
    # Ids are UUIDv7 minted with created_at, so a time bound is also an id bound: the walk
    # starts and stops near the window instead of filtering every newer run (28 ms -> 0.2 ms
    # at 100k runs). The slack keeps it exact even if the clock stepped between the two.
    if created_after is not None:
        stmt = stmt.where(
            TrainingRun.created_at >= created_after,
            TrainingRun.id >= _first_id_at(created_after, -ID_CLOCK_SLACK_MS),
        )
    if created_before is not None:
        stmt = stmt.where(
            TrainingRun.created_at < created_before,
            TrainingRun.id < _first_id_at(created_before, ID_CLOCK_SLACK_MS),
        )
    if page.cursor is not None:
        stmt = stmt.where(TrainingRun.id < decode_cursor(page.cursor, uuid.UUID))
    rows = session.execute(stmt.order_by(TrainingRun.id.desc()).limit(page.limit + 1)).all()
    items = [row._asdict() for row in rows[: page.limit]]
    cursor = encode_cursor(items[-1]["id"]) if len(rows) > page.limit else None
    return items, cursor


ID_CLOCK_SLACK_MS = 86_400_000  # a day


def _first_id_at(moment: datetime, shift_ms: int) -> uuid.UUID:
    """The smallest UUIDv7 of the millisecond ``shift_ms`` after ``moment`` (sorts first)."""
    ms = min(max(int(moment.timestamp() * 1000) + shift_ms, 0), (1 << 48) - 1)
    return uuid.UUID(int=ms << 80)


def count_active(session: Session, project_id: uuid.UUID) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(TrainingRun)
            .where(TrainingRun.project_id == project_id, TrainingRun.status.in_(list(ACTIVE)))
        )
        or 0
    )


ROWS = StatusRepository(TrainingRun)


def guarded_update(
    session: Session, run_id: uuid.UUID, expected: RunStatus, values: dict[str, Any]
) -> bool:
    """``UPDATE … WHERE id = :id AND status = :expected``; False when the row moved on."""
    return ROWS.guarded_update(session, run_id, expected, values)


def list_in_flight(
    session: Session, backend: str, limit: int, after: uuid.UUID | None = None
) -> Sequence[TrainingRun]:
    """Runs of a backend whose job may be moving: submitted (has an id), running, stopping;
    in id order from after ``after``, so a poller pages through all of them."""
    stmt = select(TrainingRun).where(
        TrainingRun.backend == backend,
        TrainingRun.status.in_([RunStatus.SUBMITTING, RunStatus.RUNNING, RunStatus.STOPPING]),
    )
    if after is not None:
        stmt = stmt.where(TrainingRun.id > after)
    return session.scalars(stmt.order_by(TrainingRun.id).limit(limit)).all()
