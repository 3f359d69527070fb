"""Evaluation request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, model_validator

from app.domain.evaluations.states import EvaluationStatus
from app.domain.runs.schemas import (
    _EXAMPLES,
    NAME,
    BilledJob,
    HyperValue,
    MetricDefinition,
    RunSpec,
)
from app.domain.schemas import WriteModel

EVALUATION_EXAMPLE: dict[str, Any] = {
    "name": "recommender-holdout",
    "entrypoint": "evaluate.py",
    "source_dir": str(_EXAMPLES / "recommender"),
    "hyperparameters": {"k": 10},
    "instance_type": "local",
    "instance_count": 1,
    "metric_definitions": [
        {"name": "ndcg_at_10", "regex": r"eval_ndcg@10=([0-9.eE+-]+)"},
        {"name": "precision_at_10", "regex": r"eval_precision@10=([0-9.eE+-]+)"},
        {"name": "recall_at_10", "regex": r"eval_recall@10=([0-9.eE+-]+)"},
    ],
}


class EvaluationCreate(WriteModel):
    """A batch job run with the model version mounted (``SM_CHANNEL_MODEL``) and test data."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EVALUATION_EXAMPLE]})

    name: str = Field(pattern=NAME, description="A name for this evaluation")
    entrypoint: str = Field(
        min_length=1, max_length=256, description="The script to run, inside the code"
    )
    source_dir: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="local: an absolute path under STRATUS_BACKENDS__LOCAL__HOST_ROOTS; "
        "sagemaker: an s3:// code archive under the project's S3 prefixes",
    )
    code_bundle_id: uuid.UUID | None = Field(
        default=None, description="An uploaded code bundle of the project (POST …/code-bundles)"
    )
    input_channels: dict[str, str] = Field(
        default_factory=dict,
        max_length=20,
        description="Channel name -> test data, as for runs; the name 'model' is taken by the "
        "model version's artifact",
    )
    hyperparameters: dict[str, HyperValue] = Field(
        default_factory=dict, max_length=100, description="Passed to the script as for runs"
    )
    instance_type: str = Field(
        default="local", min_length=1, max_length=64, description="local, or ml.* on SageMaker"
    )
    instance_count: int = Field(default=1, ge=1, le=64, description="Hosts of the job")
    max_runtime_seconds: int = Field(
        default=3600, ge=1, le=28 * 86400, description="Stopped by the backend after this"
    )
    metric_definitions: list[MetricDefinition] = Field(
        default_factory=list,
        max_length=40,
        description="Metrics scraped from the job's log (the regex's first group)",
    )

    @model_validator(mode="after")
    def _as_run_spec(self) -> EvaluationCreate:
        if "model" in self.input_channels:
            raise ValueError("input_channels: 'model' is the model version's own channel")
        if self.source_dir is None and self.code_bundle_id is None:
            raise ValueError("give code_bundle_id or source_dir")
        try:
            self.run_spec()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{where}: {first['msg']}" if where else first["msg"]) from None
        return self

    def run_spec(self) -> RunSpec:
        """The same spec a run would have: evaluations take code and data by the runs' rules."""
        return RunSpec.model_validate(self.model_dump(exclude={"name"}, exclude_none=True))


class EvaluationRead(BilledJob):
    id: uuid.UUID = Field(description="The evaluation's id")
    project_id: uuid.UUID = Field(description="Its project")
    model_version_id: uuid.UUID = Field(description="The model version it evaluates")
    name: str = Field(description="Its name")
    backend: str = Field(description="Where it runs")
    spec: dict[str, Any] = Field(description="What it runs, in a run spec's shape")
    status: EvaluationStatus = Field(description="Where it stands")
    status_reason: str | None = Field(description="Why it stands there, when known")
    external_id: str | None = Field(description="The backend's id of the job")
    failure_reason: str | None = Field(description="Why it failed")
    final_metrics: dict[str, float] = Field(description="The last value of each metric")
    created_by: uuid.UUID | None = Field(description="Who submitted it")
    created_at: datetime = Field(description="When it was submitted")
    updated_at: datetime = Field(description="Its last change")
    started_at: datetime | None = Field(description="When its job started")
    ended_at: datetime | None = Field(description="When its job ended")
    billable_seconds: float | None = Field(default=None, description="As the backend bills it")
