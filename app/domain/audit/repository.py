"""Every query on audit events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.audit.models import AuditEvent
from app.domain.pagination import PageRequest, paginate


def list_for_project(
    session: Session, project_id: uuid.UUID | None, page: PageRequest
) -> tuple[Sequence[AuditEvent], str | None]:
    """A project's events, or the global (key-management) ones when ``project_id`` is None."""
    cond = (
        AuditEvent.project_id == project_id
        if project_id is not None
        else AuditEvent.project_id.is_(None)
    )
    return paginate(session, select(AuditEvent).where(cond), AuditEvent.id, page)
