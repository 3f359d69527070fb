"""The optimizer's periodic pass: one singleton fan-out, one idempotent task per deployment."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from app.clock import utcnow
from app.db import unit_of_work
from app.domain.leases import service as leases
from app.domain.optimizer import repository, service
from app.settings import get_settings
from workers.celery_app import celery_app

logger = logging.getLogger(__name__)
LEASE_NAME = "optimizer-pass"
LIMIT = 10_000


def window_end(now: datetime, interval_s: float) -> datetime:
    """The pass's window end, aligned to the interval so every retry names the same window."""
    stamp = now.timestamp()
    return datetime.fromtimestamp(stamp - stamp % interval_s, tz=UTC)


@celery_app.task(name="stratus.optimizer.pass")
def optimizer_pass() -> int:
    """Queue one decision per optimizer-enabled deployment for this window; returns how many."""
    interval = get_settings().optimizer.interval_s
    end = window_end(utcnow(), interval)
    with unit_of_work() as session:
        # Singleton: a second scheduler or a redelivery within the interval finds it held.
        holder = f"{end.isoformat()}:{uuid.uuid4().hex[:8]}"
        if not leases.try_acquire(session, LEASE_NAME, holder, timedelta(seconds=0.9 * interval)):
            return 0
        deployments = repository.optimized_deployments(session, LIMIT)
    for deployment_id in deployments:
        optimize_deployment.apply_async(
            args=(str(deployment_id), end.isoformat()), expires=interval
        )
    return len(deployments)


@celery_app.task(name="stratus.optimizer.deployment")
def optimize_deployment(deployment_id: str, window_end_iso: str) -> bool:
    """Decide one deployment's count for one window (idempotent); True when it changed."""
    try:
        with unit_of_work() as session:
            return service.optimize(
                session, uuid.UUID(deployment_id), datetime.fromisoformat(window_end_iso)
            )
    except Exception:  # one failing deployment must not stop the others
        logger.exception("optimizing deployment %s failed", deployment_id)
        return False
