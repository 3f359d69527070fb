"""Project and membership request and response models."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from app.domain.access import Role
from app.domain.schemas import ReadModel, WriteModel

SLUG = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
SLUG_WORDS = (
    "lower-case letters, digits and hyphens, 1-63 characters, "
    "starting and ending with a letter or digit"
)


def _check_slug(value: str) -> str:
    if not re.fullmatch(SLUG, value):
        raise PydanticCustomError(
            "slug",
            "must be {words} (got {got!r})",
            {
                "words": SLUG_WORDS,
                "got": value[:80],
            },
        )
    return value


# Checked in words rather than by the bare regex, which the schema still states.
Slug = Annotated[
    str,
    AfterValidator(_check_slug),
    WithJsonSchema({"type": "string", "pattern": SLUG, "minLength": 1, "maxLength": 63}),
]
Backend = Literal["local", "sagemaker"]


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

    name: Slug = Field(description=f"Unique across Stratus: {SLUG_WORDS}.")
    description: str = Field(default="", max_length=2000)
    default_backend: Backend = "local"
    budget_usd: float | None = Field(default=None, ge=0, le=1e12)


class ProjectUpdate(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"description": "Storefront recommendations, v2"}]},
    )

    description: str | None = Field(default=None, max_length=2000)
    default_backend: Backend | None = None
    budget_usd: float | None = Field(default=None, ge=0, le=1e12)
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
