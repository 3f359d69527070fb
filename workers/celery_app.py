"""The Celery application: ``celery -A workers.celery_app:celery_app worker|beat``.

The queue only carries wake-ups (ids); the database is the source of truth, so a lost or
duplicated message costs a retry, never a result.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_process_init

from app.db import get_engine
from app.observability import logs
from app.settings import Settings, get_settings
from workers import metrics  # noqa: F401 - connects the task outcome counters

QUEUE = "stratus"
REDIS_SCHEMES = frozenset({"redis", "rediss", "sentinel"})
TASK_MODULES = (
    "workers.tasks.outbox",
    "workers.tasks.runs",
    "workers.tasks.evaluations",
    "workers.tasks.deployments",
    "workers.tasks.housekeeping",
    "workers.tasks.optimizer",
    "workers.tasks.webhooks",
)


def transport_options(broker_url: str, time_limit_s: int) -> dict[str, Any]:
    """Options for the broker's transport; each transport reads them its own way."""
    if broker_url.split("://", 1)[0] in REDIS_SCHEMES:
        # Redis redelivers an unacknowledged message after this; it must outlast any task or
        # a slow task would run twice at once.
        return {"visibility_timeout": max(3600, 4 * time_limit_s)}
    # The SQLAlchemy transport passes its options to create_engine, which rejects unknown ones.
    return {}


def backend_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per enabled backend: poll runs, poll endpoints, pull endpoint metrics."""
    backends = settings.backends
    intervals = {"local": (backends.local.poll_interval_s, 10.0)}
    enabled = {"local": backends.local.enabled}
    for name in ("sagemaker", "vertex", "azureml", "watsonx"):
        cloud = getattr(backends, name)
        intervals[name] = (float(cloud.poll_interval_s), float(cloud.metrics_period_s))
        enabled[name] = bool(cloud.enabled)
    schedule: dict[str, dict[str, Any]] = {}
    for name, (poll_s, metrics_s) in intervals.items():
        if not enabled[name]:
            continue
        # A wake-up that waited past its own interval is superseded by the next one.
        expires = {"expires": max(10.0, 2 * poll_s)}
        schedule[f"poll_runs_{name}"] = {
            "task": "stratus.runs.schedule_poll",
            "schedule": poll_s,
            "args": (name,),
            "options": expires,
        }
        schedule[f"poll_endpoints_{name}"] = {
            "task": "stratus.deployments.schedule_poll",
            "schedule": poll_s,
            "args": (name,),
            "options": expires,
        }
        schedule[f"pull_endpoint_metrics_{name}"] = {
            "task": "stratus.deployments.pull_metrics",
            "schedule": metrics_s,
            "args": (name,),
            "options": {"expires": max(10.0, 2 * metrics_s)},
        }
    return schedule


def configure(app: Celery, settings: Settings) -> None:
    """Apply Stratus' broker, reliability and schedule settings to ``app``."""
    worker = settings.worker
    time_limit = worker.task_time_limit_s
    app.conf.update(
        broker_url=settings.effective_broker_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(settings.effective_broker_url, time_limit),
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        task_default_queue=QUEUE,
        # Ack after the task ran, one message at a time: a killed worker's message goes back
        # to the queue instead of being lost with its prefetch buffer.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_time_limit=time_limit,
        task_soft_time_limit=max(1, time_limit - 10),
        beat_scheduler="workers.beat:GuardedScheduler",
        beat_schedule={
            **backend_schedule(settings),
            "relay_outbox": {
                "task": "stratus.outbox.relay",
                "schedule": worker.outbox_relay_interval_s,
                # A relay that waited this long is superseded by a later one.
                "options": {"expires": max(10.0, 5 * worker.outbox_relay_interval_s)},
            },
            "optimizer_pass": {
                "task": "stratus.optimizer.pass",
                "schedule": settings.optimizer.interval_s,
                "options": {"expires": settings.optimizer.interval_s},
            },
            "housekeeping": {
                "task": "stratus.housekeeping.run",
                "schedule": worker.housekeeping_interval_s,
                "options": {"expires": worker.housekeeping_interval_s},
            },
        },
    )


@worker_process_init.connect
def _own_connections_after_fork(**_: Any) -> None:
    # A forked pool process must not reuse pooled connections inherited from its parent.
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)


celery_app = Celery("stratus", include=list(TASK_MODULES))
configure(celery_app, get_settings())


@after_setup_logger.connect
@after_setup_task_logger.connect
def _json_logs(logger: logging.Logger, **_: Any) -> None:
    # Celery set up its handlers its way; only their format changes, and only when asked.
    if get_settings().observability.json_logs:
        logs.use_json(logger)
