"""The transactional outbox: enqueue with the change, acknowledge when the work is done."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.outbox import repository
from app.domain.outbox.models import OutboxMessage

# Topics, each relayed to one Celery task (workers/tasks/outbox.py).
RUN_SUBMIT = "run.submit"
RUN_STOP = "run.stop"
EVALUATION_SUBMIT = "evaluation.submit"
EVALUATION_STOP = "evaluation.stop"
DEPLOYMENT_CREATE = "deployment.create"
DEPLOYMENT_UPDATE = "deployment.update"
DEPLOYMENT_DELETE = "deployment.delete"
WEBHOOK_DELIVER = "webhook.deliver"
DEPLOYMENT_ROLL = "deployment.roll"


def enqueue(session: Session, topic: str, **payload: str) -> OutboxMessage:
    """Write a message in the caller's transaction; it is relayed only if that commits."""
    return repository.add(session, topic, dict(payload))


def acknowledge(session: Session, message_id: int) -> None:
    """Mark a message done; relays never send it again."""
    message = repository.get(session, message_id)
    if message is not None and message.processed_at is None:
        message.processed_at = utcnow()
        message.last_error = None


def defer(session: Session, message_id: int, error: str, base_s: int, max_s: int) -> None:
    """Keep a message for later with exponential backoff, recording why it waits."""
    message = repository.get(session, message_id)
    if message is None or message.processed_at is not None:
        return
    message.attempts += 1
    delay = min(max_s, base_s * 2 ** min(message.attempts - 1, 16))
    message.available_at = utcnow() + timedelta(seconds=delay)
    message.last_error = error[:2000]


def retry_after(session: Session, message_id: int, seconds: float, reason: str) -> None:
    """Look at the message again after ``seconds`` (no backoff: nothing failed)."""
    message = repository.get(session, message_id)
    if message is not None and message.processed_at is None:
        message.available_at = utcnow() + timedelta(seconds=seconds)
        message.last_error = reason


def claim_due(session: Session, lease: timedelta, limit: int) -> Sequence[OutboxMessage]:
    """Lease due messages to the caller's relay; they come back when the lease lapses."""
    return repository.claim_due(session, utcnow(), lease, limit)


def purge_processed(session: Session, retention: timedelta) -> int:
    """Forget messages acknowledged longer than ``retention`` ago."""
    return repository.purge_processed(session, utcnow() - retention)
