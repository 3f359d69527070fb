"""Event types and the event as the API shows it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from app.domain.schemas import ReadModel

# Every type the platform records; webhooks subscribe to these or to a prefix with ``.*``.
EVENT_TYPES: tuple[str, ...] = (
    "run.created",
    "run.submitted",
    "run.running",
    "run.completed",
    "run.failed",
    "run.stopped",
    "model_version.created",
    "deployment.created",
    "deployment.in_service",
    "deployment.updating",
    "deployment.failed",
    "deployment.deleted",
    "deployment.scaled",
    "budget.exceeded",
    "webhook.disabled",
)
PATTERN = r"^(\*|[a-z_]+\.\*|[a-z_]+\.[a-z_]+)$"


def matches(pattern: str, event_type: str) -> bool:
    """Whether a subscription pattern (``*``, ``run.*`` or ``run.failed``) covers a type."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


class EventRead(ReadModel):
    """One state change, as it was when it happened."""

    id: int = Field(description="Ordered id: later events have larger ids.")
    type: str = Field(description="What happened, e.g. `run.completed`.", examples=["run.failed"])
    project_id: uuid.UUID = Field(description="The project the subject belongs to.")
    subject_id: uuid.UUID = Field(
        description="The object that changed (run, model version, deployment, webhook, project)."
    )
    created_at: datetime = Field(description="When the change was committed (UTC).")
    data: dict[str, Any] = Field(description="The object as the API showed it after the change.")
