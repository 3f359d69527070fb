"""Chart definitions from downsampled series: shared x values, gaps, the desired-count line."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from app.domain.metrics.schemas import Series, SeriesBucket, SeriesSet
from app.domain.optimizer.schemas import DecisionRead
from app.ui.charts import aligned, compare_charts, deployment_charts

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _bucket(minute: int, value: float) -> SeriesBucket:
    start = T0 + timedelta(minutes=minute)
    return SeriesBucket(start=start, count=1, min=value, max=value, mean=value, last=value)


def _set(since_minute: int = 0, **named: list[tuple[int, float]]) -> SeriesSet:
    items = [Series(name=n, buckets=[_bucket(m, v) for m, v in p]) for n, p in named.items()]
    since = T0 + timedelta(minutes=since_minute)
    return SeriesSet(since=since, until=since + timedelta(hours=1), bucket_seconds=60, items=items)


def _decision(minute: int, before: int, after: int) -> DecisionRead:
    at = T0 + timedelta(minutes=minute)
    return DecisionRead(
        id=uuid.uuid4(),
        deployment_id=uuid.uuid4(),
        window_start=at - timedelta(hours=1),
        window_end=at,
        mode="model",
        action="scale_out",
        previous_instances=before,
        desired_instances=after,
        applied=True,
        reason="",
        details={},
        policy={},
        created_at=at,
    )


def test_aligned_takes_the_union_of_x_and_leaves_gaps() -> None:
    xs, columns = aligned([{1.0: 10.0, 3.0: 30.0}, {2.0: 2.0, 3.0: 3.0}])
    assert xs == [1.0, 2.0, 3.0]
    assert columns == [[10.0, None, 30.0], [None, 2.0, 3.0]]


def test_desired_line_follows_decisions_then_the_current_count() -> None:
    series = _set(instances=[(m, 1.0) for m in range(0, 50, 10)])
    charts = deployment_charts(
        series,
        [_decision(25, 2, 3), _decision(5, 1, 2)],  # newest first, as listed
        current_desired=1,  # scaled back by hand at minute 35
        current_since=T0 + timedelta(minutes=35),
        period_s=10.0,
        slo_ms=200.0,
        hourly_price=None,
    )
    desired = next(line for line in charts[0]["lines"] if line["label"] == "desired")
    # Points at minutes 0, 10, 20, 30, 40, each showing the count in force at its bucket's
    # end (a minute later): before the first decision, after each, and after the change.
    assert desired["values"] == [1, 2, 2, 3, 1]
    assert [c["id"] for c in charts] == ["instances", "latency"]  # no price, no cost chart


def test_compare_overlays_runs_from_their_own_first_point() -> None:
    early = _set(0, loss=[(0, 1.0), (2, 0.5)])
    late = _set(30, loss=[(30, 0.9), (31, 0.7)])
    (chart,) = compare_charts([("early", early), ("late", late)])
    assert chart["x_kind"] == "elapsed"
    assert chart["x"] == [0.0, 60.0, 120.0]
    assert [line["values"] for line in chart["lines"]] == [[1.0, None, 0.5], [0.9, 0.7, None]]
