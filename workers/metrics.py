"""Task outcomes counted for Prometheus, from Celery's signals, in every worker process."""

from __future__ import annotations

from typing import Any

from celery.signals import task_failure, task_retry, task_success

from app.observability import prometheus


def _name(sender: Any) -> str:
    return str(getattr(sender, "name", None) or "unknown")


@task_success.connect
def _succeeded(sender: Any = None, **_: Any) -> None:
    prometheus.TASKS.labels(task=_name(sender), outcome="success").inc()


@task_failure.connect
def _failed(sender: Any = None, **_: Any) -> None:
    prometheus.TASKS.labels(task=_name(sender), outcome="failure").inc()


@task_retry.connect
def _retried(sender: Any = None, request: Any = None, **_: Any) -> None:
    task = getattr(request, "task", None) if request is not None else None
    prometheus.TASKS.labels(task=str(task or _name(sender)), outcome="retry").inc()
