"""Record events with the change that causes them; list them for a project."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.domain.access import Principal, Role, authorize
from app.domain.events import repository
from app.domain.events.schemas import EventRead
from app.domain.pagination import PageRequest
from app.domain.webhooks import fanout


def record_event(
    session: Session,
    type: str,  # noqa: A002 - the event's field is called type
    project_id: uuid.UUID,
    subject_id: uuid.UUID,
    data: BaseModel | dict[str, Any],
) -> EventRead:
    """Write an event in the caller's transaction and queue its webhook deliveries with it."""
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    event = repository.add(session, type, project_id, subject_id, payload)
    fanout.queue_deliveries(session, event.id, type, project_id)
    return EventRead.model_validate(event)


def list_events(
    session: Session,
    principal: Principal,
    project_id: uuid.UUID,
    page: PageRequest,
    type_prefix: str | None = None,
    subject_id: uuid.UUID | None = None,
) -> tuple[list[EventRead], str | None]:
    """A project's events, newest first, filtered by type prefix and subject."""
    authorize(session, principal, project_id, Role.VIEWER)
    rows, cursor = repository.list_for_project(session, project_id, page, type_prefix, subject_id)
    return [EventRead.model_validate(r) for r in rows], cursor
