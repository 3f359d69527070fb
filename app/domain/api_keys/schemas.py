"""API key request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AliasChoices, ConfigDict, Field

from app.domain.schemas import ReadModel, WriteModel


class ApiKeyCreate(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "ci-pipeline", "admin": False}]},
    )

    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w .@:/-]+$")
    admin: bool = False


class ApiKeyRead(ReadModel):
    id: uuid.UUID
    name: str
    prefix: str
    admin: bool = Field(validation_alias=AliasChoices("is_admin", "admin"))
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    """Returned once, at creation: the only time the secret is ever shown."""

    secret: str
