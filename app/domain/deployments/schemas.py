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
TargetRps = Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)]


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

    optimizer_enabled: bool = Field(
        default=False, description="Let the optimizer set `desired_instances` within min and max."
    )
    latency_slo_ms: LatencySlo = Field(default=200.0, description="p95 latency target")
    headroom: Headroom = Field(default=0.2, description="Fraction of the SLO kept in reserve")
    cost_weight: CostWeight = Field(default=0.5, description="0 = latency only, 1 = cost only")
    scale_in_cooldown_s: Cooldown = Field(
        default=300, description="Seconds after a change before the optimizer may scale in."
    )
    scale_out_cooldown_s: Cooldown = Field(
        default=60, description="Seconds after a change before the optimizer may scale out."
    )
    max_step: MaxStep = Field(default=2, description="Most instances added or removed per pass")
    fallback_target_rps: TargetRps | None = Field(
        default=None,
        description=(
            "Requests/s per instance for target tracking while the latency model is not yet "
            "trusted. Set it as AWS's recipe does, to half the per-instance load a load test "
            "sustained under the SLO: the optimizer then also counts twice it as a load known "
            "to meet the SLO. Without it the fallback derives a target from observations."
        ),
    )


class ScalingPolicyPatch(WriteModel):
    """Fields of the scaling policy to change; the others keep their values."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"optimizer_enabled": True, "latency_slo_ms": 120}]},
    )

    optimizer_enabled: bool | None = Field(
        default=None, description="Let the optimizer set `desired_instances`; omit to keep."
    )
    latency_slo_ms: LatencySlo | None = Field(
        default=None, description="p95 latency target; omit to keep."
    )
    headroom: Headroom | None = Field(
        default=None, description="Fraction of the SLO kept in reserve; omit to keep."
    )
    cost_weight: CostWeight | None = Field(
        default=None, description="0 = latency only, 1 = cost only; omit to keep."
    )
    scale_in_cooldown_s: Cooldown | None = Field(
        default=None, description="Scale-in cooldown in seconds; omit to keep."
    )
    scale_out_cooldown_s: Cooldown | None = Field(
        default=None, description="Scale-out cooldown in seconds; omit to keep."
    )
    max_step: MaxStep | None = Field(
        default=None, description="Most instances added or removed per pass; omit to keep."
    )
    fallback_target_rps: TargetRps | None = Field(
        default=None,
        description="Target-tracking requests/s per instance (half a load test's); omit to keep.",
    )


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
    desired_instances: Instances = Field(default=1, description="Instances to run now.")
    min_instances: Instances = Field(
        default=1, description="Fewest instances the optimizer may choose."
    )
    max_instances: Instances = Field(
        default=4, description="Most instances the optimizer may choose."
    )
    scaling_policy: ScalingPolicy = Field(
        default_factory=ScalingPolicy, description="How the optimizer scales this deployment."
    )

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

    desired_instances: Instances | None = Field(
        default=None, description="Instances to run; omit to keep."
    )
    min_instances: Instances | None = Field(
        default=None, description="Fewest instances the optimizer may choose; omit to keep."
    )
    max_instances: Instances | None = Field(
        default=None, description="Most instances the optimizer may choose; omit to keep."
    )
    scaling_policy: ScalingPolicyPatch | None = Field(
        default=None, description="Policy fields to change; the others are kept."
    )


class DeploymentRead(ReadModel):
    id: uuid.UUID = Field(description="The deployment's id.")
    project_id: uuid.UUID = Field(description="The project that owns it.")
    model_version_id: uuid.UUID = Field(description="The model version it serves.")
    follows: str | None = Field(
        default=None, description="The name@alias it follows to each new version, if any."
    )
    name: str = Field(description="Its name, unique in the project.")
    backend: str = Field(
        description="Where it runs: `local`, `sagemaker`, `vertex`, `azureml` or `watsonx`."
    )
    instance_type: str = Field(description="The instance type of its replicas.")
    status: DeploymentStatus = Field(
        description="`creating`, `in_service`, `updating`, `deleting`, `deleted` or `failed`."
    )
    status_reason: str | None = Field(
        description="Why it is in this status, when there is more to say."
    )
    desired_instances: int = Field(
        description="Instances it should run (set by you or the optimizer)."
    )
    current_instances: int = Field(description="Instances the backend reports running.")
    min_instances: int = Field(description="Fewest instances the optimizer may choose.")
    max_instances: int = Field(description="Most instances the optimizer may choose.")
    scaling_policy: ScalingPolicy = Field(description="How the optimizer scales it.")
    external_id: str | None = Field(description="The endpoint's name or id on the backend.")
    created_by: uuid.UUID | None = Field(description="The key that created it.")
    created_at: datetime = Field(description="When it was created (UTC).")
    updated_at: datetime = Field(description="When it last changed (UTC).")
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
