"""Audit event read model."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from app.domain.schemas import ReadModel


class AuditEventRead(ReadModel):
    id: uuid.UUID = Field(description="The audit event's id.")
    project_id: uuid.UUID | None = Field(
        description="The project it concerns; null for server-wide actions."
    )
    actor_id: uuid.UUID | None = Field(
        description="The key that acted; null when the platform did."
    )
    action: str = Field(description="What was done, e.g. `run.create`.")
    object_type: str = Field(description="The kind of object acted on.")
    object_id: str = Field(description="The object's id.")
    details: dict[str, Any] = Field(description="What changed, in a few fields (never a secret).")
    created_at: datetime = Field(description="When it happened (UTC).")
