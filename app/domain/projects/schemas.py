"""Project and membership request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from app.domain.access import Role
from app.domain.schemas import ReadModel, WriteModel

SLUG = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
Backend = Literal["local", "sagemaker"]
# budget_usd is NUMERIC(14, 2): twelve digits before the point. Rounding to cents never
# carries a value at or under this bound past it.
MAX_BUDGET_USD = 999_999_999_999.99
Budget = Annotated[float, Field(ge=0, le=MAX_BUDGET_USD)]


class ProjectCreate(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "recommender",
                    "description": "Top-k item recommendations for the storefront",
                    "default_backend": "local",
                    "budget_usd": 500.0,
                }
            ]
        },
    )

    name: str = Field(pattern=SLUG, description="Lowercase slug, unique across Stratus.")
    description: str = Field(default="", max_length=2000)
    default_backend: Backend = "local"
    budget_usd: Budget | None = None


class ProjectUpdate(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"description": "Storefront recommendations, v2"}]},
    )

    description: str | None = Field(default=None, max_length=2000)
    default_backend: Backend | None = None
    budget_usd: Budget | None = None
    metrics_retention_days: int | None = Field(
        default=None, ge=1, le=36_500, description="Days metric points are kept; null: forever"
    )


class ProjectRead(ReadModel):
    id: uuid.UUID
    name: str
    description: str
    default_backend: str
    budget_usd: float | None
    metrics_retention_days: int | None = None
    created_at: datetime
    updated_at: datetime


class MemberPut(WriteModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "editor"}]})

    role: Role


class MemberRead(ReadModel):
    project_id: uuid.UUID
    principal_id: uuid.UUID
    role: Role
    created_at: datetime
