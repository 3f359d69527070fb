"""Model version request and response models."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints, field_validator

from app.domain.projects.schemas import EXAMPLE_PREFIX
from app.domain.runs.schemas import NAME
from app.domain.schemas import ReadModel, WriteModel

# Same shape as run names: a finished run registers its model under the run's name.
MODEL_NAME = NAME
# A name, or name@alias (a registered model's alias).
MODEL_NAME_OR_REF = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(@[A-Za-z][A-Za-z0-9_-]{0,63})?$"
S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S+$")
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-/:]{1,128}$")]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def check_artifact_uri(value: str) -> str:
    """An s3://bucket/key URI, a file:///absolute/path URI or an absolute path."""
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ValueError("must not contain whitespace or control characters")
    if value.startswith("s3://"):
        if not S3_URI.match(value):
            raise ValueError("s3 URIs look like s3://bucket/key")
        return value
    path = value.removeprefix("file://")
    if not path.startswith("/") or len(path) < 2:
        raise ValueError("give s3://bucket/key, file:///absolute/path or an absolute path")
    if ".." in path.split("/"):
        raise ValueError("must not contain '..' segments")
    return value


class ModelVersionCreate(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "recommender",
                    # Under the S3 prefix of the project example's backend_config.
                    "artifact_uri": EXAMPLE_PREFIX + "model.tar.gz",
                    "framework": "pytorch",
                    "metrics": {"ndcg_at_10": 0.412, "loss": 0.083},
                }
            ]
        },
    )

    name: str = Field(pattern=MODEL_NAME, description="Versions are numbered per name.")
    artifact_uri: str = Field(
        min_length=2,
        max_length=2048,
        description="s3://bucket/key under the project's S3 prefixes, or file:///absolute/path "
        "or an absolute path under the admin's host roots",
    )
    framework: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="What the artifact is for, e.g. `sklearn` (serving picks a runtime by it).",
    )
    metrics: dict[MetricName, FiniteFloat] = Field(
        default_factory=dict,
        max_length=200,
        description="Evaluation metrics to keep with the version.",
    )

    @field_validator("artifact_uri")
    @classmethod
    def _artifact_uri(cls, value: str) -> str:
        return check_artifact_uri(value)


class ModelVersionRead(ReadModel):
    id: uuid.UUID = Field(description="The model version's id.")
    project_id: uuid.UUID = Field(description="The project that owns it.")
    name: str = Field(description="The model's name; versions are numbered per name.")
    version: int = Field(description="1, 2, 3… per name.")
    artifact_uri: str = Field(description="Where the model's files are.")
    framework: str | None = Field(description="What the artifact is for, e.g. `sklearn`.")
    metrics: dict[str, float] = Field(
        description="Metrics kept with it (a run's final metrics, or given)."
    )
    source_run_id: uuid.UUID | None = Field(
        description="The run that produced it; null when registered by hand."
    )
    created_by: uuid.UUID | None = Field(
        description="The key that created it; null when a run did."
    )
    created_at: datetime = Field(description="When it was created (UTC).")
