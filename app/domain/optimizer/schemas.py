"""Optimizer request and response models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from app.domain.schemas import ReadModel, WriteModel


class DecisionRead(ReadModel):
    id: uuid.UUID = Field(description="The decision's id.")
    deployment_id: uuid.UUID = Field(description="The deployment decided for.")
    window_start: datetime = Field(description="Start of the metrics window it read (UTC).")
    window_end: datetime = Field(description="End of that window (UTC).")
    mode: str = Field(
        description="How it decided: the fitted model, or the target-tracking fallback."
    )
    action: str = Field(description="What it chose: scale out, scale in or hold.")
    previous_instances: int = Field(description="Desired instances before the decision.")
    desired_instances: int = Field(description="Desired instances it chose.")
    applied: bool = Field(description="Whether the deployment was changed to it.")
    reason: str = Field(description="Why, in one sentence.")
    details: dict[str, Any] = Field(description="fit, candidate table and inputs")
    policy: dict[str, Any] = Field(description="The scaling policy it applied.")
    created_at: datetime = Field(description="When it was made (UTC).")


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
    deployment_id: uuid.UUID = Field(description="The deployment evaluated.")
    window: dict[str, Any] = Field(description="The metrics window the fit used.")
    fit: dict[str, Any] | None = Field(
        description="The fitted latency model; null when there is too little data."
    )
    candidates: list[dict[str, Any]] = Field(
        description="Per instance count: predicted latency, efficiency and cost."
    )
    note: str = Field(description="What to keep in mind about these numbers.")


class TrainingRecommendationRead(ReadModel):
    entrypoint: str = Field(description="The entrypoint the past runs share.")
    instance_type: str | None = Field(description="The instance type they used.")
    runs_used: int = Field(description="Past runs the recommendation is based on.")
    instance_count: int = Field(description="Recommended `instance_count`.")
    mode: str = Field(description="How it was found: a fit over past runs, or a default.")
    reason: str = Field(description="Why, in one sentence.")
    fit: dict[str, Any] | None = Field(
        description="The fitted time model; null without enough runs."
    )
    options: list[dict[str, Any]] = Field(
        description="Per instance count: predicted time and cost."
    )
    cheapest: dict[str, Any] | None = Field(description="The cheapest option.")
    fastest: dict[str, Any] | None = Field(description="The fastest option.")
