"""Runs tracked from the caller's own training code (backend ``external``): the request bodies
that finish them and the rules their spec follows.

Such a run has no job and no backend: it is created ``running``, the client logs metrics and
parameters into it, and the client finishes it (complete, fail) or stops it.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from app.clock import utcnow
from app.domain.metrics.schemas import METRIC_NAME
from app.domain.runs.models import TrainingRun
from app.domain.runs.schemas import EXTERNAL, HP_KEY, HyperValue, RunCreate
from app.domain.runs.states import RunStatus
from app.domain.schemas import WriteModel
from app.errors import Unprocessable

# Spec fields that mean something without a job: what is trained and with which settings.
TRACKED_FIELDS = frozenset({"entrypoint", "framework", "framework_version", "hyperparameters"})
INSTANCE_TYPE = "external"  # priced at 0: the caller's own machine
MAX_HYPERPARAMETERS = 100
MAX_FINAL_METRICS = 100


class RunCompletion(WriteModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"final_metrics": {"loss": 0.081}}]}
    )

    final_metrics: dict[str, float] = Field(
        default_factory=dict,
        max_length=MAX_FINAL_METRICS,
        description="The run's final metrics, kept on it and on its model version.",
    )

    @field_validator("final_metrics")
    @classmethod
    def _metrics(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k in value if not re.match(METRIC_NAME, k)]
        if bad:
            raise ValueError(f"metric names must match {METRIC_NAME}: {bad[:3]}")
        if not all(math.isfinite(v) for v in value.values()):
            raise ValueError("metric values must be finite numbers")
        return value


class RunFailure(WriteModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "CUDA out of memory"}]}
    )

    reason: str = Field(min_length=1, max_length=4000, description="Why the run failed, in words.")


class RunParams(WriteModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"hyperparameters": {"lr": 0.01}}]}
    )

    hyperparameters: dict[str, HyperValue] = Field(
        min_length=1,
        max_length=MAX_HYPERPARAMETERS,
        description="Hyperparameters to add to the run's spec.",
    )

    @field_validator("hyperparameters")
    @classmethod
    def _keys(cls, value: dict[str, HyperValue]) -> dict[str, HyperValue]:
        bad = [k for k in value if not re.match(HP_KEY, k)]
        if bad:
            raise ValueError(f"hyperparameter names must match {HP_KEY}: {bad[:3]}")
        return value


def tracked_run(project_id: uuid.UUID, data: RunCreate, created_by: uuid.UUID) -> TrainingRun:
    """The row of a new tracked run, ``running`` from the start; 422 on job-only spec fields."""
    extra = sorted(data.spec.model_fields_set - TRACKED_FIELDS)
    if extra:
        fields = ", ".join(f"spec.{name}" for name in extra)
        raise Unprocessable(
            f"{fields}: only {', '.join(sorted(TRACKED_FIELDS))} apply to an external run "
            "(it has no job)",
            code="invalid_spec",
        )
    spec: dict[str, Any] = data.spec.model_dump(mode="json", include=set(TRACKED_FIELDS))
    spec = {k: v for k, v in spec.items() if v is not None}
    spec.update(instance_type=INSTANCE_TYPE, instance_count=1)
    now = utcnow()
    return TrainingRun(
        project_id=project_id,
        name=data.name,
        backend=EXTERNAL,
        spec=spec,
        status=RunStatus.RUNNING,
        final_metrics={},
        created_by=created_by,
        started_at=now,
        created_at=now,
        updated_at=now,
        # Nothing of Stratus's is billed: the run's instance-seconds and cost are 0.
        billable_seconds=0.0,
    )
