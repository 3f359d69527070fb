"""Chart definitions for the browser, built from downsampled series: one x array shared by
every line of a chart (what uPlot draws), gaps as None."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from app.domain.metrics.schemas import Series, SeriesBucket, SeriesSet
from app.domain.metrics.steps import StepSeries
from app.domain.optimizer.schemas import DecisionRead

Chart = dict[str, Any]
Line = dict[str, Any]


def line(
    label: str, values: Sequence[float | None], axis: str = "left", dash: bool = False
) -> Line:
    return {"label": label, "values": list(values), "axis": axis, "dash": dash}


def chart(key: str, title: str, x: Sequence[float], lines: Sequence[Line], **extra: Any) -> Chart:
    """One chart: ``x`` in seconds (epoch, or elapsed when ``x_kind`` is 'elapsed')."""
    return {
        "id": key,
        "title": title,
        "x": list(x),
        "lines": list(lines),
        "x_kind": "time",
        **extra,
    }


def _points(series: Series, value: Callable[[SeriesBucket], float]) -> dict[float, float]:
    return {round(b.start.timestamp(), 3): value(b) for b in series.buckets}


def aligned(
    columns: Sequence[Mapping[float, float]],
) -> tuple[list[float], list[list[float | None]]]:
    """The union of the columns' x values, and each column's value there (None: no point)."""
    xs = sorted({x for column in columns for x in column})
    return xs, [[column.get(x) for x in xs] for column in columns]


def run_charts(series: SeriesSet) -> list[Chart]:
    """One chart per metric of a run, over time (bucket means)."""
    out = []
    for item in series.items:
        xs, (values,) = aligned([_points(item, lambda b: b.mean)])
        out.append(chart(f"metric-{item.name}", item.name, xs, [line(item.name, values)]))
    return out


def run_step_charts(series: Sequence[StepSeries]) -> list[Chart]:
    """One chart per metric of a run, against the training step (bucket means)."""
    return [
        chart(
            f"metric-{item.name}",
            item.name,
            item.steps,
            [line(item.name, item.means)],
            x_kind="step",
        )
        for item in series
    ]


def compare_charts(named: Iterable[tuple[str, SeriesSet]]) -> list[Chart]:
    """Each metric of the runs overlaid, x = seconds since each run's first point."""
    by_metric: dict[str, list[tuple[str, dict[float, float]]]] = {}
    for label, series in named:
        origin = series.since.timestamp() if series.since else 0.0
        for item in series.items:
            column = {round(x - origin, 3): v for x, v in _points(item, lambda b: b.mean).items()}
            by_metric.setdefault(item.name, []).append((label, column))
    out = []
    for name in sorted(by_metric):
        runs = by_metric[name]
        xs, columns = aligned([column for _, column in runs])
        lines = [line(label, values) for (label, _), values in zip(runs, columns, strict=True)]
        out.append(chart(f"metric-{name}", name, xs, lines, x_kind="elapsed"))
    return out


def _desired_at(
    decisions: Sequence[DecisionRead], t: float, current: int, current_since: float
) -> int:
    """The desired count in force at ``t``: the current one since the deployment last changed,
    before that the last decision made by then (``decisions`` oldest first)."""
    if t >= current_since:
        return current
    desired = decisions[0].previous_instances if decisions else current
    for decision in decisions:
        if decision.created_at.timestamp() > t:
            break
        desired = decision.desired_instances
    return desired


def deployment_charts(
    series: SeriesSet,
    decisions: Sequence[DecisionRead],
    current_desired: int,
    current_since: datetime,
    period_s: float,
    slo_ms: float,
    hourly_price: float | None,
) -> list[Chart]:
    """Instances (desired, in service) against load; p95 against the SLO; cost per hour."""
    named = {item.name: item for item in series.items}
    empty = Series(name="", buckets=[])
    in_service = _points(named.get("instances", empty), lambda b: b.mean)
    load = _points(named.get("invocations", empty), lambda b: b.mean / period_s)
    p95 = _points(named.get("latency_p95_ms", empty), lambda b: b.max)
    xs, (served, rps, latency) = aligned([in_service, load, p95])
    ordered = sorted(decisions, key=lambda d: d.created_at)
    since = current_since.timestamp()
    desired = [_desired_at(ordered, x + series.bucket_seconds, current_desired, since) for x in xs]
    charts = [
        chart(
            "instances",
            "Instances against load",
            xs,
            [
                line("desired", desired, dash=True),
                line("in service", served),
                line("load (req/s)", rps, axis="right"),
            ],
            y_label="instances",
            y2_label="req/s",
        ),
        chart(
            "latency",
            "p95 latency against the SLO",
            xs,
            [line("p95 (ms)", latency), line("SLO", [slo_ms] * len(xs), dash=True)],
            y_label="ms",
        ),
    ]
    if hourly_price:  # unpriced or free (local) instances: the page says so in figures
        cost = [None if v is None else round(v * hourly_price, 6) for v in served]
        charts.append(chart("cost", "Cost per hour (USD)", xs, [line("USD/h", cost)]))
    return charts
