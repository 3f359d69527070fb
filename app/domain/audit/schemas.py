"""Audit event read model."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from app.domain.schemas import ReadModel


class AuditEventRead(ReadModel):
    id: uuid.UUID
    project_id: uuid.UUID | None
    actor_id: uuid.UUID | None
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]
    created_at: datetime
