"""Training-run request and response models; the spec is validated before anything is stored."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, computed_field, field_validator, model_validator

from app.backends.local.examples import examples_dir
from app.domain.costs.accounting import priced, run_instance_seconds
from app.domain.runs.states import RunStatus
from app.domain.schemas import ReadModel, WriteModel

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
CHANNEL = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
HP_KEY = r"^[A-Za-z_][A-Za-z0-9_.-]{0,255}$"
Backend = Literal["local", "sagemaker", "vertex", "azureml", "watsonx", "external"]
# Runs tracked from the caller's own training code: no job, no backend, finished by the client.
EXTERNAL = "external"
HyperValue = str | int | float | bool

# The shipped recommender, from this installation's examples: it works as sent on a
# `stratus dev` started in the checkout (whose directory is then the host root).
_EXAMPLES = examples_dir() or Path(__file__).resolve().parents[3] / "examples"
SPEC_EXAMPLE: dict[str, Any] = {
    "entrypoint": "train.py",
    "source_dir": str(_EXAMPLES / "recommender"),
    "hyperparameters": {"epochs": 5, "factors": 32, "lr": 0.1},
    "instance_type": "local",
    "instance_count": 1,
    "max_runtime_seconds": 600,
    "metric_definitions": [{"name": "loss", "regex": r"\bloss=([0-9.eE+-]+)"}],
}


class MetricDefinition(WriteModel):
    """A metric scraped from the job's log, as SageMaker does: the regex's first group."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-/:]{1,128}$", description="The metric's name.")
    regex: str = Field(
        min_length=1,
        max_length=500,
        description="A regex over each log line; its first group is the value.",
    )

    @field_validator("regex")
    @classmethod
    def _one_group(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        if compiled.groups < 1:
            raise ValueError("needs a capture group around the metric's value")
        return value


class RunSpec(WriteModel):
    """What to train and on what: the same contract for every backend."""

    entrypoint: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Script to run, relative to the code (local, or a SageMaker framework image).",
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
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Container image to train with (instead of a framework).",
    )
    framework: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="Training framework, e.g. `sklearn` or `pytorch`.",
    )
    framework_version: str | None = Field(
        default=None, pattern=r"^[0-9][0-9A-Za-z.\-]{0,31}$", description="The framework's version."
    )
    hyperparameters: dict[str, HyperValue] = Field(
        default_factory=dict, max_length=100, description="Passed to the script as `--name value`."
    )
    instance_type: str = Field(
        default="local",
        min_length=1,
        max_length=64,
        description="Instance type; `local` on the local backend.",
    )
    instance_count: int = Field(default=1, ge=1, le=64, description="Hosts to train on.")
    volume_size_gb: int = Field(default=30, ge=1, le=16384, description="Disk per host.")
    max_runtime_seconds: int = Field(
        default=86400, ge=1, le=28 * 86400, description="The job is stopped after this long."
    )
    input_channels: dict[str, str] = Field(
        default_factory=dict,
        max_length=20,
        description="Channel name -> data: file:// URIs or absolute paths under the host roots "
        "(local), s3:// URIs under the project's S3 prefixes (sagemaker)",
    )
    output_location: str | None = Field(
        default=None,
        max_length=1024,
        description="Where the model goes: a directory under the host roots (local), or an "
        "s3:// URI under the project's S3 prefixes (sagemaker)",
    )
    metric_definitions: list[MetricDefinition] = Field(
        default_factory=list, max_length=40, description="Metrics scraped from the job's log."
    )
    use_spot: bool = Field(default=False, description="Train on spot capacity (SageMaker).")
    max_wait_seconds: int | None = Field(
        default=None,
        ge=1,
        le=28 * 86400,
        description="With spot: longest wait for capacity plus runtime.",
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        max_length=100,
        description="Environment variables of the job; viewers see the names only.",
    )
    model_name: str | None = Field(
        default=None,
        pattern=NAME,
        description="The registered model the run's artifact becomes a version of "
        "(default: the run's name).",
    )

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_names(cls, value: str | None) -> str | None:
        if value is not None and any(len(part.encode()) > 255 for part in value.split("/")):
            raise ValueError("each name in the entrypoint's path is at most 255 bytes")
        return value

    @field_validator("hyperparameters")
    @classmethod
    def _hp_keys(cls, value: dict[str, HyperValue]) -> dict[str, HyperValue]:
        bad = [k for k in value if not re.match(HP_KEY, k)]
        if bad:
            raise ValueError(f"hyperparameter names must match {HP_KEY}: {bad[:3]}")
        return value

    @field_validator("input_channels")
    @classmethod
    def _channel_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not re.match(CHANNEL, k)]
        if bad:
            raise ValueError(f"channel names must match {CHANNEL}: {bad[:3]}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        self._one_code_source()
        if self.use_spot and (self.max_wait_seconds or 0) < self.max_runtime_seconds:
            raise ValueError("use_spot needs max_wait_seconds >= max_runtime_seconds")
        if not self.use_spot and self.max_wait_seconds is not None:
            raise ValueError("max_wait_seconds only applies with use_spot")
        names = [m.name for m in self.metric_definitions]
        if len(names) != len(set(names)):
            raise ValueError("metric definition names must be unique")
        return self

    def _one_code_source(self) -> None:
        # Script mode takes its code from exactly one place; an image carries its own.
        if self.source_dir is not None and self.code_bundle_id is not None:
            raise ValueError("give one of source_dir or code_bundle_id, not both")
        if self.code_bundle_id is not None and not self.entrypoint:
            raise ValueError("code_bundle_id needs an entrypoint inside the bundle")


class RunCreate(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "recommender-baseline", "backend": "local", "spec": SPEC_EXAMPLE}]
        },
    )

    name: str = Field(
        pattern=NAME, description="The run's name; also the name of the model it produces."
    )
    backend: Backend | None = Field(default=None, description="Default: the project's backend")
    spec: RunSpec = Field(
        default_factory=RunSpec, description="What to run; a tracked (external) run may omit it"
    )

    @model_validator(mode="after")
    def _has_code(self) -> RunCreate:
        # A tracked (external) run runs the caller's code wherever it is: nothing to name here.
        if self.backend == EXTERNAL:
            return self
        spec = self.spec
        if not spec.entrypoint and not spec.image:
            raise ValueError("give spec.entrypoint (script mode) or spec.image")
        if spec.entrypoint and not spec.image and not (spec.source_dir or spec.code_bundle_id):
            raise ValueError("script mode needs code: give code_bundle_id or source_dir")
        return self


MASKED = "***"


def masked_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with its environment values hidden (keys kept), for viewers."""
    environment = spec.get("environment")
    if not environment:
        return spec
    return {**spec, "environment": dict.fromkeys(environment, MASKED)}


class BilledJob(ReadModel):
    """A batch job's cost, from its spec, times and what the backend billed."""

    spec: dict[str, Any] = Field(
        description="What it runs and on what (environment values masked for viewers)."
    )
    started_at: datetime | None = Field(description="When it started running (UTC).")
    ended_at: datetime | None = Field(description="When it ended (UTC).")
    billable_seconds: float | None = Field(
        default=None, description="Seconds the backend bills, once it reports them."
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def instance_seconds(self) -> float:
        """Billed instance-seconds, or wall time x instances while the backend has not said."""
        count = int(self.spec.get("instance_count", 1))
        return round(
            run_instance_seconds(self.billable_seconds, self.started_at, self.ended_at, count), 3
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cost_usd(self) -> float | None:
        """instance_seconds at the instance type's price (None when the type has no price)."""
        return priced(str(self.spec.get("instance_type", "local")), self.instance_seconds)


class RunRead(BilledJob):
    id: uuid.UUID = Field(description="The run's id.")
    project_id: uuid.UUID = Field(description="The project that owns it.")
    name: str = Field(description="Its name.")
    backend: str = Field(
        description="Where it runs: `local`, `sagemaker`, `vertex`, `azureml`, `watsonx` or "
        "`external` (tracked from your code)."
    )
    status: RunStatus = Field(
        description="`pending`, `submitting`, `running`, `stopping`, `completed`, `failed` "
        "or `stopped`."
    )
    status_reason: str | None = Field(
        description="Why it is in this status, when there is more to say."
    )
    external_id: str | None = Field(description="The job's id on the backend.")
    failure_reason: str | None = Field(description="Why it failed.")
    final_metrics: dict[str, float] = Field(description="Metrics at the end of the run.")
    artifact_uri: str | None = Field(description="Where the trained model went.")
    created_by: uuid.UUID | None = Field(description="The key that created it.")
    created_at: datetime = Field(description="When it was created (UTC).")
    updated_at: datetime = Field(description="When it last changed (UTC).")
    secondary_status: str | None = Field(
        default=None, description="The backend's finer-grained status, e.g. `Downloading`."
    )
