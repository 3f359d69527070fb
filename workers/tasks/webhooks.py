"""Webhook deliveries, woken by the outbox relay: sign and send with no transaction open,
then record the attempt. The outbox message stays until the delivery is settled, so a killed
worker's delivery is sent again once its lease lapses (at least once)."""

from __future__ import annotations

import logging

from app.db import unit_of_work
from app.domain.outbox import service as outbox
from app.domain.webhooks import delivery, sender
from app.observability import prometheus
from app.settings import get_settings
from workers.celery_app import celery_app
from workers.tasks.work import exclusive, payload_id

logger = logging.getLogger(__name__)


@celery_app.task(name="stratus.webhooks.deliver")
def deliver_webhook(message_id: int) -> None:
    """Make one attempt at the delivery named by an outbox message."""
    with exclusive(message_id) as holding:
        if holding:
            _deliver(message_id)


def _deliver(message_id: int) -> None:
    settings = get_settings()
    config = settings.webhooks
    with unit_of_work() as session:
        delivery_id = payload_id(session, message_id, "delivery_id")
        if delivery_id is None:
            return
        request = delivery.prepare(session, delivery_id, settings)
        if request is None:
            outbox.acknowledge(session, message_id)
            return
    outcome = sender.send(request, config.timeout_s, config.allow_private_targets)
    with unit_of_work() as session:
        wait = delivery.record_attempt(session, delivery_id, outcome, config)
        if wait is None:
            outbox.acknowledge(session, message_id)
        else:
            why = outcome.error or f"the endpoint answered {outcome.status_code}"
            outbox.retry_after(session, message_id, wait, f"webhook delivery: {why}")
    result = "delivered" if outcome.ok else ("retry" if wait is not None else "failed")
    prometheus.WEBHOOK_DELIVERIES.labels(outcome=result).inc()
    logger.info("webhook delivery %s: %s (%s)", delivery_id, result, outcome.status_code)
