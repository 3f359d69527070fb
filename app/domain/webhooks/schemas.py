"""Webhook request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, StringConstraints, field_validator

from app.domain.events.schemas import EVENT_TYPES, PATTERN
from app.domain.schemas import ReadModel, WriteModel

WEBHOOK_EXAMPLE: dict[str, Any] = {
    "url": "https://hooks.example.com/stratus",
    "events": ["run.*", "deployment.failed"],
    "description": "Page the on-call engineer when something breaks.",
}


class WebhookStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


EventPattern = Annotated[str, StringConstraints(pattern=PATTERN, max_length=64)]


class WebhookCreate(WriteModel):
    """An endpoint to call when events of the given types happen in the project."""

    model_config = ConfigDict(json_schema_extra={"examples": [WEBHOOK_EXAMPLE]})

    url: str = Field(
        min_length=8,
        max_length=2000,
        description="http(s) URL that receives a POST per event; redirects are not followed.",
    )
    events: list[EventPattern] = Field(
        min_length=1,
        max_length=50,
        description="Event types to send: exact (`run.failed`), a family (`run.*`) or `*`.",
    )
    description: str | None = Field(
        default=None, max_length=500, description="What the endpoint is for."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; put them in the path or use the secret")
        return value

    @field_validator("events")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        for pattern in value:
            family = pattern[:-1] if pattern.endswith(".*") else None
            known = pattern == "*" or (
                any(t.startswith(family) for t in EVENT_TYPES) if family else pattern in EVENT_TYPES
            )
            if not known:
                raise ValueError(
                    f"{pattern!r} matches no event type; known: {', '.join(EVENT_TYPES)}"
                )
        return sorted(set(value))


class WebhookRead(ReadModel):
    """A webhook endpoint (its secret is shown only when created or rotated)."""

    id: uuid.UUID = Field(description="The webhook's id.")
    project_id: uuid.UUID = Field(description="The project whose events it receives.")
    url: str = Field(description="Where deliveries are POSTed.")
    events: list[str] = Field(description="Event type patterns it is subscribed to.")
    description: str | None = Field(description="What the endpoint is for.")
    status: WebhookStatus = Field(
        description="`active`, or `disabled` after failing for the configured window."
    )
    status_reason: str | None = Field(description="Why it is disabled, when it is.")
    failing_since: datetime | None = Field(
        description="Start of the current run of failed attempts; null when the last succeeded."
    )
    created_at: datetime = Field(description="When it was created (UTC).")
    updated_at: datetime = Field(description="When it last changed (UTC).")


class WebhookCreated(WebhookRead):
    """A webhook with its signing secret, shown this once."""

    secret: str = Field(
        description="`whsec_` + base64 key for verifying `webhook-signature`; shown only now."
    )


class AttemptRead(ReadModel):
    """One try at delivering an event."""

    at: datetime = Field(description="When the attempt started (UTC).")
    status_code: int | None = Field(description="The endpoint's HTTP status; null if none came.")
    latency_ms: float = Field(description="Time from sending to the end of the response, in ms.")
    error: str | None = Field(description="Why it failed without a status (timeout, refused).")
    response_body: str | None = Field(description="The first 1 KB of the response body.")


class DeliveryRead(ReadModel):
    """One event sent to one endpoint, with its attempts."""

    id: uuid.UUID = Field(description="The delivery's id; `webhook-id` is `msg_` + its hex.")
    webhook_id: uuid.UUID = Field(description="The endpoint it goes to.")
    event_id: int = Field(description="The event it carries.")
    event_type: str = Field(description="The event's type.")
    status: DeliveryStatus = Field(
        description="`pending` (being tried), `delivered` (2xx) or `failed` (gave up)."
    )
    attempt_count: int = Field(description="How many attempts were made.")
    attempts: list[AttemptRead] = Field(description="The latest attempts, oldest first.")
    next_attempt_at: datetime | None = Field(description="When it is tried next, if pending.")
    delivered_at: datetime | None = Field(description="When the endpoint accepted it.")
    created_at: datetime = Field(description="When the event was queued for this endpoint.")
