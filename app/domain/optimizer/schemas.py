"""Optimizer request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from app.domain.schemas import ReadModel, WriteModel


class DecisionRead(ReadModel):
    id: uuid.UUID
    deployment_id: uuid.UUID
    window_start: datetime
    window_end: datetime
    mode: str
    action: str
    previous_instances: int
    desired_instances: int
    applied: bool
    reason: str
    details: dict[str, Any] = Field(description="fit, candidate table and inputs")
    policy: dict[str, Any]
    created_at: datetime


class WhatIfRequest(WriteModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"instances": [1, 2, 3, 4], "load_rps": 120.0}]},
    )

    instances: list[int] = Field(
        min_length=1,
        max_length=100,
        description="Instance counts to evaluate, each from 1 to the deployment's max_instances",
    )
    load_rps: float | None = Field(
        default=None,
        ge=0,
        le=1e7,
        allow_inf_nan=False,
        description="Offered load to evaluate at; default: the window's forecast",
    )

    def counts(self) -> list[int]:
        return sorted(set(self.instances))


class WhatIfRead(ReadModel):
    deployment_id: uuid.UUID
    window: dict[str, Any]
    fit: dict[str, Any] | None
    candidates: list[dict[str, Any]]
    note: str


class TrainingRecommendationRead(ReadModel):
    entrypoint: str
    instance_type: str | None
    runs_used: int
    instance_count: int
    mode: str
    reason: str
    fit: dict[str, Any] | None
    options: list[dict[str, Any]]
    cheapest: dict[str, Any] | None
    fastest: dict[str, Any] | None
