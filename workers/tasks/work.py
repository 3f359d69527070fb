"""What every outbox-driven task does first: load its message and its object, and settle
the message when there is nothing (left) to do or no backend to do it with."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy.orm import Session

from app.backends.base import BackendError
from app.db import unit_of_work
from app.domain.leases import service as leases
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


@contextmanager
def exclusive(message_id: int) -> Iterator[bool]:
    """Hold the message against a concurrent delivery of it for the block; False if another has it.

    A wake-up can start just before its outbox lease lapses while the relay sends the message
    again; without this both deliveries would call the backend. The hold is short and renewed
    while the block runs, so a killed worker's hold lapses within one lease, not a task limit.
    """
    with held(f"outbox:{message_id}") as holding:
        if not holding:
            with unit_of_work() as session:
                ttl_s = get_settings().worker.message_lease_s
                outbox.retry_after(
                    session, message_id, ttl_s, "another delivery is being processed"
                )
        yield holding


@contextmanager
def held(name: str) -> Iterator[bool]:
    """Hold the named lease for the block, renewed while it runs; False if another has it.

    Periodic tasks that call a backend (pollers, metric pulls) hold one per backend, so an
    overlapping second run of the same task does not call the backend twice.
    """
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    ttl_s = get_settings().worker.message_lease_s
    ttl = timedelta(seconds=ttl_s)
    with unit_of_work() as session:
        acquired = leases.try_acquire(session, name, holder, ttl)
    if not acquired:
        yield False
        return
    done = threading.Event()

    def renew() -> None:
        while not done.wait(ttl_s / 3):
            try:
                with unit_of_work() as session:
                    leases.try_acquire(session, name, holder, ttl)
            except Exception:  # a missed renewal only shortens the hold
                logger.warning("renewing the hold %s failed", name)

    heartbeat = threading.Thread(target=renew, name=f"hold-{name}", daemon=True)
    heartbeat.start()
    try:
        yield True
    finally:
        done.set()
        heartbeat.join()
        with unit_of_work() as session:
            leases.release(session, name, holder)
