"""Housekeeping: drop rows whose purpose has passed, so hot tables stay small."""

from __future__ import annotations

import logging
from datetime import timedelta

from app.clock import utcnow
from app.db import unit_of_work
from app.domain.idempotency import repository as idempotency_repository
from app.domain.leases import repository as leases_repository
from app.domain.metrics import service as metrics
from app.domain.outbox import service as outbox
from app.settings import MetricsSettings, get_settings
from workers.celery_app import celery_app

logger = logging.getLogger(__name__)


@celery_app.task(name="stratus.housekeeping.run")
def housekeeping() -> dict[str, int]:
    """Purge expired idempotency records, old outbox rows and metrics past retention."""
    settings = get_settings()
    retention = timedelta(days=settings.worker.outbox_retention_days)
    now = utcnow()
    with unit_of_work() as session:
        purged = {
            "idempotency_records": idempotency_repository.purge_expired(session, now),
            "outbox": outbox.purge_processed(session, retention),
            "leases": leases_repository.purge_expired(session, now - timedelta(days=1)),
        }
    logger.info("housekeeping purged %s", purged)
    # Separate from the unit of work above: the metric purge commits batch by batch.
    logger.info("housekeeping purged metrics %s", _purge_metrics(settings.metrics))
    return purged


def _purge_metrics(config: MetricsSettings) -> dict[str, int]:
    # One short transaction per batch, and a bounded number of them per pass: a project that
    # just turned retention on catches up over several passes instead of one long lock.
    batch_ttl = timedelta(hours=config.batch_id_ttl_hours)
    total = {"metric_points": 0, "metric_batches": 0}
    for _ in range(config.purge_max_batches):
        with unit_of_work() as session:
            done = metrics.purge_expired(session, utcnow(), batch_ttl, config.purge_batch_size)
        for name, count in done.items():
            total[name] += count
        if done["metric_points"] < config.purge_batch_size:
            break
    return total
