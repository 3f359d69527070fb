"""The outbox relay: claim due messages after commit, then wake the task for each topic."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Task

from app.db import unit_of_work
from app.domain.outbox import service as outbox
from app.settings import get_settings
from workers.celery_app import celery_app
from workers.tasks import deployments, evaluations, runs, webhooks

logger = logging.getLogger(__name__)

TOPIC_TASKS: dict[str, Task[Any, Any]] = {
    outbox.RUN_SUBMIT: runs.submit_run,
    outbox.RUN_STOP: runs.stop_run,
    outbox.EVALUATION_SUBMIT: evaluations.submit_evaluation,
    outbox.EVALUATION_STOP: evaluations.stop_evaluation,
    outbox.DEPLOYMENT_CREATE: deployments.create_deployment,
    outbox.DEPLOYMENT_UPDATE: deployments.update_deployment,
    outbox.DEPLOYMENT_DELETE: deployments.delete_deployment,
    outbox.WEBHOOK_DELIVER: webhooks.deliver_webhook,
    outbox.DEPLOYMENT_ROLL: deployments.roll_deployment,
}


@celery_app.task(name="stratus.outbox.relay")
def relay_outbox() -> int:
    """Claim due outbox messages and publish each to its topic's task; returns how many."""
    worker = get_settings().worker
    lease = timedelta(seconds=worker.outbox_lease_s)
    with unit_of_work() as session:
        claimed = outbox.claim_due(session, lease, worker.outbox_batch_size)
        due: list[tuple[int, Task[Any, Any]]] = []
        for message in claimed:
            task = TOPIC_TASKS.get(message.topic)
            if task is None:
                outbox.defer(
                    session,
                    message.id,
                    f"no task handles topic {message.topic!r}",
                    worker.outbox_retry_base_s,
                    worker.outbox_retry_max_s,
                )
                logger.error("outbox message %s has unknown topic %r", message.id, message.topic)
            else:
                due.append((message.id, task))
    if not due:
        return 0
    # Publishing happens after the claim committed: the broker never hears of a row that a
    # rollback could still take back, and a failed publish only waits out the lease.
    published = 0
    with celery_app.producer_or_acquire() as producer:
        for message_id, task in due:
            try:
                # A wake-up older than the lease is redundant: the row was relayed again.
                task.apply_async(
                    args=(message_id,), producer=producer, expires=lease.total_seconds()
                )
            except Exception:
                logger.exception(
                    "publishing outbox message %s failed; %d left for the next relay after the "
                    "lease",
                    message_id,
                    len(due) - published,
                )
                break
            published += 1
    return published
