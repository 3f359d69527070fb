"""CloudWatch queries for an endpoint's metrics, and their answers as ENDPOINT_METRICS samples."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from app.backends.base import MetricSample
from app.backends.sagemaker_requests import VARIANT

NAMESPACE = "AWS/SageMaker"
# query id -> (CloudWatch metric, statistic)
QUERIES = {
    "inv": ("Invocations", "Sum"),
    "ipi": ("InvocationsPerInstance", "Sum"),
    "model_avg": ("ModelLatency", "Average"),
    "model_p95": ("ModelLatency", "p95"),
    "overhead_avg": ("OverheadLatency", "Average"),
    "overhead_p95": ("OverheadLatency", "p95"),
    "err4": ("Invocation4XXErrors", "Sum"),
    "err5": ("Invocation5XXErrors", "Sum"),
}
_SUMS = {
    "inv": "invocations",
    "ipi": "invocations_per_instance",
    "err4": "errors_4xx",
    "err5": "errors_5xx",
}
_US_PER_MS = 1000.0


def metric_queries(endpoint_name: str, period_s: int) -> list[dict[str, Any]]:
    """GetMetricData queries for the endpoint's one variant."""
    dimensions = [
        {"Name": "EndpointName", "Value": endpoint_name},
        {"Name": "VariantName", "Value": VARIANT},
    ]
    return [
        {
            "Id": query_id,
            "MetricStat": {
                "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dimensions},
                "Period": period_s,
                "Stat": stat,
            },
            "ReturnData": True,
        }
        for query_id, (metric, stat) in QUERIES.items()
    ]


def collect(results: Iterable[Mapping[str, Any]]) -> dict[datetime, dict[str, float]]:
    """GetMetricData results (any number of pages) as period start -> query id -> value."""
    periods: dict[datetime, dict[str, float]] = defaultdict(dict)
    for result in results:
        for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
            if value is not None:
                periods[ts][result["Id"]] = float(value)
    return periods


def samples(periods: Mapping[datetime, Mapping[str, float]], period_s: int) -> list[MetricSample]:
    """ENDPOINT_METRICS samples, stamped at the end of each period (CloudWatch stamps the start)."""
    out: list[MetricSample] = []
    for start in sorted(periods):
        values = periods[start]
        end = start + timedelta(seconds=period_s)
        for query_id, name in _SUMS.items():
            if query_id in values:
                out.append(MetricSample(name, end, values[query_id]))
        # SageMaker reports latency in microseconds, split into model time and its own overhead.
        for model, overhead, name in (
            ("model_avg", "overhead_avg", "latency_mean_ms"),
            # The sum of two p95s bounds the p95 of the sum from above: a safe side for an SLO.
            ("model_p95", "overhead_p95", "latency_p95_ms"),
        ):
            if model in values:
                total = values[model] + values.get(overhead, 0.0)
                out.append(MetricSample(name, end, total / _US_PER_MS))
        # InvocationsPerInstance is Invocations divided by the instances serving.
        if values.get("ipi", 0.0) > 0 and "inv" in values:
            out.append(MetricSample("instances", end, float(round(values["inv"] / values["ipi"]))))
    return out
