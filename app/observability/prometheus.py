"""Prometheus metrics. Counters and histograms live in this module; with
PROMETHEUS_MULTIPROC_DIR set (``stratus dev`` sets it under the data dir), every uvicorn and
Celery process writes them to files there and a scrape adds them up. Levels (runs by status,
outbox backlog) are read from the database at scrape time, so they are right whichever process
answers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "stratus_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "stratus_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
TASKS = Counter(
    "stratus_tasks",
    "Celery task outcomes, by task name and outcome (success, failure, retry).",
    ["task", "outcome"],
)
BACKEND_CALLS = Counter(
    "stratus_backend_api_calls", "HTTP calls made to a cloud backend's API.", ["backend"]
)
BACKEND_THROTTLES = Counter(
    "stratus_backend_api_throttles",
    "Backend API calls refused as throttled (by the cloud or the shared request budget).",
    ["backend"],
)
WEBHOOK_DELIVERIES = Counter(
    "stratus_webhook_deliveries",
    "Webhook delivery attempts, by outcome (delivered, retry, failed).",
    ["outcome"],
)
OPTIMIZER_DECISIONS = Counter(
    "stratus_optimizer_decisions",
    "Optimizer decisions, by mode and whether they changed the desired count.",
    ["mode", "applied"],
)

Levels = Callable[[], dict[str, list[tuple[dict[str, str], float]]]]


class DatabaseLevels(Collector):
    """Gauges read at scrape time: ``levels()`` maps a metric name to (labels, value) rows."""

    HELP = {
        "stratus_runs": "Training runs by status.",
        "stratus_deployments": "Deployments by status.",
        "stratus_deployment_instances": "Instances of live deployments, desired and current.",
        "stratus_outbox_backlog": "Outbox messages not yet processed.",
        "stratus_outbox_oldest_age_seconds": "Age of the oldest unprocessed outbox message.",
    }

    def __init__(self, levels: Levels) -> None:
        self._levels = levels

    def collect(self) -> Iterable[Metric]:
        for name, rows in self._levels().items():
            labels = sorted(rows[0][0]) if rows and rows[0][0] else []
            family = GaugeMetricFamily(name, self.HELP.get(name, name), labels=labels)
            for row_labels, value in rows:
                family.add_metric([row_labels[k] for k in labels], value)
            yield family


def exposition(levels: Levels) -> tuple[bytes, str]:
    """The text exposition of every process's metrics plus the database levels."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for collector in (HTTP_REQUESTS, HTTP_LATENCY, TASKS, BACKEND_CALLS):
            registry.register(collector)
        for collector in (BACKEND_THROTTLES, WEBHOOK_DELIVERIES, OPTIMIZER_DECISIONS):
            registry.register(collector)
    registry.register(DatabaseLevels(levels))
    return generate_latest(registry), CONTENT_TYPE_LATEST
