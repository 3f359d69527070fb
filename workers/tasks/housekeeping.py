"""Housekeeping: drop rows whose purpose has passed, so hot tables stay small."""

from __future__ import annotations

import logging
from datetime import timedelta

from app.clock import utcnow
from app.db import unit_of_work
from app.domain.idempotency import repository as idempotency_repository
from app.domain.outbox import service as outbox
from app.settings import get_settings
from workers.celery_app import celery_app

logger = logging.getLogger(__name__)


@celery_app.task(name="stratus.housekeeping.run")
def housekeeping() -> dict[str, int]:
    """Purge expired idempotency records and long-processed outbox rows."""
    retention = timedelta(days=get_settings().worker.outbox_retention_days)
    now = utcnow()
    with unit_of_work() as session:
        purged = {
            "idempotency_records": idempotency_repository.purge_expired(session, now),
            "outbox": outbox.purge_processed(session, retention),
        }
    logger.info("housekeeping purged %s", purged)
    return purged
