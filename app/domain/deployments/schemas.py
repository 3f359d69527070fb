"""Deployment request and response models, and the scaling policy they carry."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, Field, computed_field, model_validator

from app.domain.aliases.schemas import MODEL_REF
from app.domain.costs.accounting import deployment_instance_seconds, priced
from app.domain.deployments.states import DeploymentStatus
from app.domain.projects.schemas import SLUG_WORDS, Backend, Slug
from app.domain.schemas import ReadModel, WriteModel

MAX_INSTANCES = 100
LatencySlo = Annotated[float, Field(gt=0, le=600_000, allow_inf_nan=False)]
Headroom = Annotated[float, Field(ge=0, le=0.9, allow_inf_nan=False)]
CostWeight = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Cooldown = Annotated[int, Field(ge=0, le=86_400)]
MaxStep = Annotated[int, Field(ge=1, le=MAX_INSTANCES)]
Instances = Annotated[int, Field(ge=1, le=MAX_INSTANCES)]


def bounds_problem(min_instances: int, desired: int, max_instances: int) -> str | None:
    """Why the instance bounds are inconsistent, or None when min <= desired <= max."""
    if not min_instances <= max_instances:
        return f"min_instances ({min_instances}) must not exceed max_instances ({max_instances})"
    if not min_instances <= desired <= max_instances:
        return (
            f"desired_instances ({desired}) must lie within "
            f"min_instances ({min_instances}) and max_instances ({max_instances})"
        )
    return None


class ScalingPolicy(WriteModel):
    """How the optimizer may size the deployment (it only acts when enabled)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "optimizer_enabled": True,
                    "latency_slo_ms": 150,
                    "headroom": 0.2,
                    "cost_weight": 0.5,
                    "scale_in_cooldown_s": 300,
                    "scale_out_cooldown_s": 60,
                    "max_step": 2,
                }
            ]
        },
    )

    optimizer_enabled: bool = False
    latency_slo_ms: LatencySlo = Field(default=200.0, description="p95 latency target")
    headroom: Headroom = Field(default=0.2, description="Fraction of the SLO kept in reserve")
    cost_weight: CostWeight = Field(default=0.5, description="0 = latency only, 1 = cost only")
    scale_in_cooldown_s: Cooldown = 300
    scale_out_cooldown_s: Cooldown = 60
    max_step: MaxStep = Field(default=2, description="Most instances added or removed per pass")


class ScalingPolicyPatch(WriteModel):
    """Fields of the scaling policy to change; the others keep their values."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"optimizer_enabled": True, "latency_slo_ms": 120}]},
    )

    optimizer_enabled: bool | None = None
    latency_slo_ms: LatencySlo | None = None
    headroom: Headroom | None = None
    cost_weight: CostWeight | None = None
    scale_in_cooldown_s: Cooldown | None = None
    scale_out_cooldown_s: Cooldown | None = None
    max_step: MaxStep | None = None


class DeploymentCreate(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "recommender-prod",
                    "model_version_id": "0190f5a4-7c3e-7b2a-9d1e-5f6a7b8c9d0e",
                    "backend": "local",
                    "instance_type": "local",
                    "desired_instances": 2,
                    "min_instances": 1,
                    "max_instances": 4,
                    "scaling_policy": {"optimizer_enabled": True, "latency_slo_ms": 150},
                }
            ]
        },
    )

    name: Slug = Field(description=f"Unique in the project: {SLUG_WORDS}.")
    model_version_id: uuid.UUID | None = Field(
        default=None, description="A model version of this project (or give model)"
    )
    model: str | None = Field(
        default=None,
        pattern=MODEL_REF,
        description="A registered model's alias, name@alias (e.g. recommender@production): "
        "the deployment serves the version it points at and follows it when it moves",
    )
    backend: Backend | None = Field(default=None, description="Default: the project's backend")
    instance_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="'local' (or 'local.<size>') on local; e.g. ml.m5.large on sagemaker",
    )
    desired_instances: Instances = 1
    min_instances: Instances = 1
    max_instances: Instances = 4
    scaling_policy: ScalingPolicy = Field(default_factory=ScalingPolicy)

    @model_validator(mode="after")
    def _bounds(self) -> DeploymentCreate:
        if (self.model_version_id is None) == (self.model is None):
            raise ValueError("give one of model_version_id or model (name@alias)")
        problem = bounds_problem(self.min_instances, self.desired_instances, self.max_instances)
        if problem:
            raise ValueError(problem)
        return self


class DeploymentUpdate(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"desired_instances": 3, "scaling_policy": {"latency_slo_ms": 120}}]
        },
    )

    desired_instances: Instances | None = None
    min_instances: Instances | None = None
    max_instances: Instances | None = None
    scaling_policy: ScalingPolicyPatch | None = None


class DeploymentRead(ReadModel):
    id: uuid.UUID
    project_id: uuid.UUID
    model_version_id: uuid.UUID
    follows: str | None = Field(
        default=None, description="The name@alias it follows to each new version, if any"
    )
    name: str
    backend: str
    instance_type: str
    status: DeploymentStatus
    status_reason: str | None
    desired_instances: int
    current_instances: int
    min_instances: int
    max_instances: int
    scaling_policy: ScalingPolicy
    external_id: str | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    accumulated_instance_seconds: float = Field(
        default=0.0, validation_alias="instance_seconds", exclude=True
    )
    capacity_since: datetime | None = Field(default=None, exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def instance_seconds(self) -> float:
        """Instance-seconds served since the endpoint came up (cost accounting)."""
        return round(
            deployment_instance_seconds(
                self.accumulated_instance_seconds, self.current_instances, self.capacity_since
            ),
            3,
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cost_usd(self) -> float | None:
        """instance_seconds at the instance type's price (None when the type has no price)."""
        return priced(self.instance_type, self.instance_seconds)
