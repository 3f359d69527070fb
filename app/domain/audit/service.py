"""Recording and reading audit events."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Principal
from app.domain.audit import repository
from app.domain.audit.models import AuditEvent
from app.domain.audit.schemas import AuditEventRead
from app.domain.pagination import PageRequest
from app.ids import uuid7


def event_values(
    actor: Principal | None,
    action: str,
    obj_type: str,
    obj_id: uuid.UUID | str,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The columns of an audit event but its project, for a repository that writes the event
    in the same statement as the change (its project comes from the changed row)."""
    return {
        "id": uuid7(),
        "actor_id": actor.id if actor else None,
        "action": action,
        "object_type": obj_type,
        "object_id": str(obj_id),
        "details": details or {},
        "created_at": utcnow(),
    }


def record(
    session: Session,
    actor: Principal | None,
    action: str,
    obj_type: str,
    obj_id: uuid.UUID | str,
    project_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit event to the caller's unit of work (it commits with the change)."""
    values = event_values(actor, action, obj_type, obj_id, details)
    session.add(AuditEvent(project_id=project_id, **values))


def list_events(
    session: Session, project_id: uuid.UUID | None, page: PageRequest
) -> tuple[list[AuditEventRead], str | None]:
    """A project's events (or the global, key-management ones when ``project_id`` is None)."""
    rows, cursor = repository.list_for_project(session, project_id, page)
    return [AuditEventRead.model_validate(r) for r in rows], cursor
