"""What every outbox-driven task does first: load its message and its object, and settle
the message when there is nothing (left) to do or no backend to do it with."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.orm import Session

from app.backends.base import BackendError
from app.db import unit_of_work
from app.domain.outbox import repository as outbox_repository
from app.domain.outbox import service as outbox
from app.settings import get_settings

logger = logging.getLogger(__name__)


def payload_id(session: Session, message_id: int, key: str) -> uuid.UUID | None:
    """The object id in an unprocessed message; acknowledges a malformed one."""
    message = outbox_repository.get(session, message_id)
    if message is None or message.processed_at is not None:
        return None
    try:
        return uuid.UUID(str(message.payload[key]))
    except (KeyError, ValueError):
        logger.error("outbox message %s without a valid %s: %r", message_id, key, message.payload)
        outbox.acknowledge(session, message_id)
        return None


def defer(session: Session, message_id: int, reason: str) -> None:
    """Keep the message for a later attempt with backoff."""
    worker = get_settings().worker
    outbox.defer(session, message_id, reason, worker.outbox_retry_base_s, worker.outbox_retry_max_s)


def settle_error(message_id: int, error: BackendError) -> bool:
    """After a failed backend call: keep a retryable message; True when it is final."""
    if error.retryable:
        with unit_of_work() as session:
            defer(session, message_id, str(error))
        return False
    return True


def acknowledge(message_id: int) -> None:
    with unit_of_work() as session:
        outbox.acknowledge(session, message_id)
