"""Metric point request and response models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.domain.schemas import ReadModel, UtcDatetime, WriteModel

METRIC_NAME = r"^[A-Za-z0-9_.\-/:]{1,128}$"
MAX_BATCH = 10_000
MAX_STEP = 2**63 - 1  # BIGINT


class MetricPointIn(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "loss", "value": 0.083, "step": 120, "timestamp": "2026-11-27T10:15:00Z"}
            ]
        },
    )

    name: str = Field(pattern=METRIC_NAME)
    value: float = Field(allow_inf_nan=False)
    step: int | None = Field(default=None, ge=0, le=MAX_STEP)
    timestamp: UtcDatetime | None = Field(default=None, description="Default: when received")


class MetricBatch(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "points": [
                        {"name": "loss", "value": 0.083, "step": 120},
                        {"name": "latency_p95_ms", "value": 41.5},
                    ]
                }
            ]
        },
    )

    points: list[MetricPointIn] = Field(min_length=1, max_length=MAX_BATCH)


class MetricsAccepted(BaseModel):
    accepted: int


class MetricPointRead(ReadModel):
    name: str
    value: float
    step: int | None
    timestamp: datetime
