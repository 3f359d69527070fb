"""Aggregate queries on metric points: downsampled series, latest values, optimizer windows.

They filter on ``subject_id`` alone (ids are unique across runs and deployments, and the
caller already resolved the subject), so PostgreSQL answers them from ranges of the
``(subject_id, name, timestamp, id) INCLUDE (value)`` index without reading the heap: a
time-bounded query reads the points in its range, not the subject's whole history.
PostgreSQL computes everything in SQL; other databases (the small embedded SQLite file) fetch
the window's values and compute the same numbers in Python.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Float, Integer, cast, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, aliased

from app.domain.metrics.models import MetricPoint
from app.domain.metrics.repository import subject_names_cte
from app.domain.metrics.schemas import WindowStats


@dataclass(frozen=True)
class Bucket:
    index: int
    count: int
    min: float
    max: float
    mean: float
    last: float


# Aggregates leave out NaN (stored as NULL, which no comparison passes) and the infinities.
FINITE = (MetricPoint.value > -math.inf, MetricPoint.value < math.inf)


def _window(
    subject_id: uuid.UUID, name: str, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    conditions = [MetricPoint.subject_id == subject_id, MetricPoint.name == name, *FINITE]
    if since is not None:
        conditions.append(MetricPoint.timestamp >= since)
    if until is not None:
        conditions.append(MetricPoint.timestamp < until)
    return conditions


def time_range(
    session: Session, subject_id: uuid.UUID, names: Sequence[str]
) -> tuple[datetime | None, datetime | None]:
    """The first and last timestamp of the named metrics of a subject.

    min() and max() per name are each one probe at an end of the name's index range.
    """
    if not names:
        return None, None
    ends = [
        select(agg(MetricPoint.timestamp))
        .where(MetricPoint.subject_id == subject_id, MetricPoint.name == name)
        .scalar_subquery()
        for agg in (func.min, func.max)
        for name in names
    ]
    row = session.execute(select(*ends)).one()
    firsts = [v for v in (_aware(x) for x in row[: len(names)]) if v is not None]
    lasts = [v for v in (_aware(x) for x in row[len(names) :]) if v is not None]
    return (min(firsts) if firsts else None), (max(lasts) if lasts else None)


def _aware(value: datetime | None) -> datetime | None:
    # Aggregates lose the column type on SQLite, which hands back naive UTC datetimes.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def series(
    session: Session,
    subject_id: uuid.UUID,
    name: str,
    start: datetime,
    width: timedelta,
    buckets: int,
    since: datetime | None,
    until: datetime | None,
) -> list[Bucket]:
    """Points in [since, until) grouped into ``buckets`` buckets of ``width`` from ``start``.

    Each non-empty bucket gives count, min, max, mean and the value of its latest point
    (by timestamp, then by arrival). Points past the last bucket's end fall into it.
    """
    conditions = _window(subject_id, name, since, until)
    seconds = width.total_seconds()
    if session.get_bind().dialect.name != "postgresql":
        rows = session.execute(
            select(MetricPoint.timestamp, MetricPoint.id, MetricPoint.value).where(*conditions)
        )
        return bucketize(
            ((ts.timestamp(), point_id, value) for ts, point_id, value in rows),
            start.timestamp(),
            seconds,
            buckets,
        )
    epoch = func.date_part("epoch", MetricPoint.timestamp)
    return grouped(session, epoch, start.timestamp(), seconds, buckets, conditions)


def grouped(
    session: Session,
    key: ColumnElement[Any],
    start: float,
    width: float,
    buckets: int,
    conditions: Sequence[ColumnElement[bool]],
) -> list[Bucket]:
    """PostgreSQL: the points matching ``conditions`` in ``buckets`` buckets of ``width`` along
    ``key`` (epoch seconds, or a step) from ``start``; the last ones take what lies past it."""
    index = func.least(func.greatest(func.floor((key - start) / width), 0), buckets - 1)
    points = (
        select(
            cast(index, Integer).label("b"),
            cast(key, Float).label("key"),
            MetricPoint.id,
            MetricPoint.value,
        )
        .where(*conditions)
        .subquery()
    )
    # max() of [key, id, value] arrays picks the latest point in one pass, with no sort.
    latest = func.max(
        postgresql.array([points.c.key, cast(points.c.id, Float), points.c.value]),
        type_=postgresql.ARRAY(Float),
    )[3]
    stmt = (
        select(
            points.c.b,
            func.count(),
            func.min(points.c.value),
            func.max(points.c.value),
            func.avg(points.c.value),
            latest,
        )
        .group_by(points.c.b)
        .order_by(points.c.b)
    )
    return [Bucket(*row) for row in session.execute(stmt)]


def bucketize(points: Any, start: float, seconds: float, buckets: int) -> list[Bucket]:
    """The portable twin of the SQL in ``series``: (epoch, id, value) triples into buckets."""
    acc: dict[int, list[Any]] = {}
    for epoch, point_id, value in points:
        index = min(max(math.floor((epoch - start) / seconds), 0), buckets - 1)
        slot = acc.get(index)
        if slot is None:
            acc[index] = [1, value, value, value, (epoch, point_id, value)]
            continue
        slot[0] += 1
        slot[1] = min(slot[1], value)
        slot[2] = max(slot[2], value)
        slot[3] += value
        slot[4] = max(slot[4], (epoch, point_id, value))
    return [
        Bucket(i, n, low, high, total / n, last[2])
        for i, (n, low, high, total, last) in sorted(acc.items())
    ]


def names(session: Session, subject_id: uuid.UUID) -> list[str]:
    """The subject's distinct metric names, sorted."""
    cte = subject_names_cte(subject_id)
    stmt = select(cte.c.name).where(cte.c.name.is_not(None)).order_by(cte.c.name)
    return list(session.scalars(stmt))


def latest(session: Session, subject_id: uuid.UUID) -> Sequence[MetricPoint]:
    """The newest point (by timestamp, then the last received) of each of the subject's names.

    One backward index probe per distinct name finds it.
    """
    cte = subject_names_cte(subject_id)
    newest = aliased(MetricPoint)
    newest_id = (
        select(newest.id)
        .where(newest.subject_id == subject_id, newest.name == cte.c.name)
        .order_by(newest.timestamp.desc(), newest.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    ids = select(newest_id).select_from(cte).where(cte.c.name.is_not(None))
    stmt = select(MetricPoint).where(MetricPoint.id.in_(ids)).order_by(MetricPoint.name)
    return session.scalars(stmt).all()


def window_aggregates(
    session: Session,
    subject_id: uuid.UUID,
    names: Sequence[str],
    since: datetime,
    until: datetime,
) -> dict[str, WindowStats]:
    """Count, mean and p95 (continuous, as ``percentile_cont``) per name over [since, until)."""
    result = {name: WindowStats(0, None, None) for name in names}
    if not names:
        return result
    conditions = [
        MetricPoint.subject_id == subject_id,
        MetricPoint.name.in_(list(names)),
        MetricPoint.timestamp >= since,
        MetricPoint.timestamp < until,
        *FINITE,
    ]
    if session.get_bind().dialect.name == "postgresql":
        stmt = (
            select(
                MetricPoint.name,
                func.count(),
                func.avg(MetricPoint.value),
                func.percentile_cont(0.95).within_group(MetricPoint.value),
            )
            .where(*conditions)
            .group_by(MetricPoint.name)
        )
        for name, n, mean, p95 in session.execute(stmt):
            result[name] = WindowStats(int(n), float(mean), float(p95))
        return result
    values: dict[str, list[float]] = {}
    for name, value in session.execute(
        select(MetricPoint.name, MetricPoint.value).where(*conditions)
    ):
        values.setdefault(name, []).append(value)
    for name, seen in values.items():
        result[name] = WindowStats(len(seen), sum(seen) / len(seen), percentile(seen, 0.95))
    return result


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks, exactly like ``percentile_cont``."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
