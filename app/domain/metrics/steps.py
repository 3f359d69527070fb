"""Downsampled series by training step instead of time (a run's x axis of choice).

As in ``aggregates``: PostgreSQL groups in SQL; other databases fetch the points and group
them in Python with the same bucketing."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

from sqlalchemy import Float, cast, func, select
from sqlalchemy.orm import Session

from app.domain.metrics.aggregates import Bucket, bucketize, grouped
from app.domain.metrics.models import MetricPoint


@dataclass(frozen=True)
class StepSeries:
    """One metric's bucket means against the first step of each bucket."""

    name: str
    steps: list[float]
    means: list[float]


def step_range(session: Session, subject_id: uuid.UUID, name: str) -> tuple[int, int] | None:
    """The first and last step of a metric, or None when none of its points has a step."""
    row = session.execute(
        select(func.min(MetricPoint.step), func.max(MetricPoint.step)).where(
            MetricPoint.subject_id == subject_id,
            MetricPoint.name == name,
            MetricPoint.step.is_not(None),
        )
    ).one()
    first, last = row
    return None if first is None or last is None else (int(first), int(last))


def by_step(
    session: Session, subject_id: uuid.UUID, name: str, first: int, width: float, buckets: int
) -> list[Bucket]:
    """Points with a step, grouped into ``buckets`` buckets of ``width`` steps from ``first``."""
    conditions = (
        MetricPoint.subject_id == subject_id,
        MetricPoint.name == name,
        MetricPoint.step.is_not(None),
    )
    if session.get_bind().dialect.name != "postgresql":
        rows = session.execute(
            select(MetricPoint.step, MetricPoint.id, MetricPoint.value).where(*conditions)
        )
        stepped = ((float(s), i, v) for s, i, v in rows if s is not None)
        return bucketize(stepped, first, width, buckets)
    step = cast(MetricPoint.step, Float)
    return grouped(session, step, float(first), width, buckets, conditions)


def step_width(first: int, last: int, buckets: int) -> float:
    """Steps per bucket: at least one, so a short run keeps one point per step."""
    return max(1.0, math.ceil((last - first + 1) / buckets))
