"""Project and membership request and response models."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from app.domain.access import Role
from app.domain.schemas import ReadModel, WriteModel
from app.settings import ROLE_ARN

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
Backend = Literal["local", "sagemaker", "vertex", "azureml", "watsonx"]
# Backends that need their server settings complete before a project may name them.
CLOUD_BACKENDS = ("vertex", "azureml", "watsonx")
# s3://bucket/ or s3://bucket/some/prefix/: whole path segments, so a prefix is a boundary.
S3_PREFIX = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/(?:[A-Za-z0-9!_.*'()=-]+/)*$")
EXAMPLE_PREFIX = "s3://stratus-models/recommender/"


class SageMakerProjectConfig(WriteModel):
    """The project's identity on SageMaker: its execution role and the S3 it may touch."""

    role_arn: str | None = Field(
        default=None,
        pattern=ROLE_ARN,
        description="Execution role of the project's jobs and models; must be in the "
        "server's STRATUS_BACKENDS__SAGEMAKER__ALLOWED_ROLE_ARNS (default: the server's role).",
    )
    s3_prefixes: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="s3://bucket/prefix/ locations every s3:// URI of the project lies under.",
    )

    @field_validator("s3_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if not S3_PREFIX.match(p) or "/../" in p or "/./" in p]
        if bad:
            raise ValueError(f"S3 prefixes look like s3://bucket/prefix/ (ending in /): {bad[:3]}")
        return list(dict.fromkeys(value))


class BackendConfig(WriteModel):
    """Per-project backend settings, set by the project's owners."""

    sagemaker: SageMakerProjectConfig | None = Field(
        default=None, description="SageMaker settings of the project (role, S3 prefixes)."
    )


def backend_config_of(raw: dict[str, Any] | None) -> BackendConfig:
    """A stored ``backend_config`` as the typed schema (keys it does not know are dropped)."""
    section = (raw or {}).get("sagemaker")
    if not isinstance(section, dict):
        return BackendConfig()
    known = {k: v for k, v in section.items() if k in SageMakerProjectConfig.model_fields}
    try:
        return BackendConfig(sagemaker=SageMakerProjectConfig.model_validate(known))
    except ValidationError:  # a row older than these rules: show nothing rather than fail
        return BackendConfig()


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
                    "backend_config": {"sagemaker": {"s3_prefixes": [EXAMPLE_PREFIX]}},
                }
            ]
        },
    )

    name: Slug = Field(description=f"Unique across Stratus: {SLUG_WORDS}.")
    description: str = Field(default="", max_length=2000, description="What the project is for.")
    default_backend: Backend = Field(
        default="local",
        description="Backend for runs and deployments that name none; vertex, azureml and "
        "watsonx must be enabled and configured on the server (else 422).",
    )
    budget_usd: Budget | None = Field(
        default=None, description="Spend limit; work that would exceed it is refused (409)."
    )
    backend_config: BackendConfig | None = Field(
        default=None, description="Backend settings: SageMaker role and S3 prefixes."
    )


class ProjectUpdate(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"description": "Storefront recommendations, v2"}]},
    )

    description: str | None = Field(
        default=None, max_length=2000, description="What the project is for; omit to keep."
    )
    default_backend: Backend | None = Field(
        default=None, description="Backend for runs and deployments that name none; omit to keep."
    )
    budget_usd: Budget | None = Field(default=None, description="Spend limit; omit to keep.")
    metrics_retention_days: int | None = Field(
        default=None, ge=1, le=36_500, description="Days metric points are kept; null: forever"
    )
    backend_config: BackendConfig | None = Field(
        default=None, description="Replaces the project's backend settings (owners only)."
    )


class ProjectRead(ReadModel):
    id: uuid.UUID = Field(description="The project's id.")
    name: str = Field(description="Its name, unique across Stratus.")
    description: str = Field(description="What it is for.")
    default_backend: str = Field(description="Backend for runs and deployments that name none.")
    budget_usd: float | None = Field(description="Spend limit; null when it has none.")
    metrics_retention_days: int | None = Field(
        default=None, description="Days metric points are kept; null: forever."
    )
    backend_config: BackendConfig = Field(
        default_factory=BackendConfig,
        description="Backend settings: SageMaker role and S3 prefixes.",
    )
    created_at: datetime = Field(description="When it was created (UTC).")
    updated_at: datetime = Field(description="When it last changed (UTC).")

    @field_validator("backend_config", mode="before")
    @classmethod
    def _stored(cls, value: object) -> object:
        return backend_config_of(value) if isinstance(value, dict) else value


class MemberPut(WriteModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "editor"}]})

    role: Role = Field(description="`owner`, `editor` or `viewer`.")


class MemberRead(ReadModel):
    project_id: uuid.UUID = Field(description="The project.")
    principal_id: uuid.UUID = Field(description="The member's key id.")
    role: Role = Field(description="`owner`, `editor` or `viewer`.")
    created_at: datetime = Field(description="When the role was granted (UTC).")
