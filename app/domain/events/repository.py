"""Every query on the event log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.events.models import Event
from app.domain.pagination import PageRequest, paginate


def add(
    session: Session,
    event_type: str,
    project_id: uuid.UUID,
    subject_id: uuid.UUID,
    data: dict[str, Any],
) -> Event:
    event = Event(type=event_type, project_id=project_id, subject_id=subject_id, data=data)
    session.add(event)
    session.flush()
    return event


def _filtered(project_id: uuid.UUID, type_prefix: str | None, subject_id: uuid.UUID | None) -> Any:
    stmt = select(Event).where(Event.project_id == project_id)
    if type_prefix:
        escaped = type_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Event.type.like(f"{escaped}%", escape="\\"))
    if subject_id is not None:
        stmt = stmt.where(Event.subject_id == subject_id)
    return stmt


def list_for_project(
    session: Session,
    project_id: uuid.UUID,
    page: PageRequest,
    type_prefix: str | None,
    subject_id: uuid.UUID | None,
) -> tuple[Sequence[Event], str | None]:
    """Newest first, cursor-paged by id."""
    return paginate(session, _filtered(project_id, type_prefix, subject_id), Event.id, page)


def after(session: Session, project_id: uuid.UUID, last_id: int, limit: int) -> Sequence[Event]:
    """The project's events with ids above ``last_id``, oldest first."""
    stmt = (
        select(Event)
        .where(Event.project_id == project_id, Event.id > last_id)
        .order_by(Event.id)
        .limit(limit)
    )
    return session.scalars(stmt).all()


def latest_id(session: Session, project_id: uuid.UUID) -> int:
    return session.scalar(select(func.max(Event.id)).where(Event.project_id == project_id)) or 0


def get(session: Session, event_id: int) -> Event | None:
    return session.get(Event, event_id)


def ids_after(session: Session, last_id: int, up_to: int) -> Sequence[tuple[int, Any]]:
    """(id, created_at) of every project's events in ``(last_id, up_to]``, oldest first: the
    ids a stream must not pass while one of them may still be committing."""
    stmt = (
        select(Event.id, Event.created_at)
        .where(Event.id > last_id, Event.id <= up_to)
        .order_by(Event.id)
    )
    return [(row[0], row[1]) for row in session.execute(stmt)]
