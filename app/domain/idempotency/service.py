"""Idempotency-Key handling for POSTs that create.

Phase 1 (``begin``) claims the key in its own short transaction, so a concurrent retry sees
it in flight (409). Phase 2 (``complete``) stores the response in the request's own unit of
work, so the change and its recorded response commit together. A failed request releases the
key (``release``) so the client can retry.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.db import unit_of_work
from app.domain.idempotency import repository
from app.domain.idempotency.models import IdempotencyRecord
from app.errors import Conflict, Unprocessable


@dataclass(frozen=True)
class Replay:
    """The stored first response for this key."""

    status: int
    body: Any


@dataclass(frozen=True)
class Claim:
    """This request owns the key; its response will be recorded."""

    record_id: uuid.UUID


def begin(
    factory: sessionmaker[Session],
    principal_id: uuid.UUID,
    key: str,
    method: str,
    path: str,
    request_hash: str,
    ttl: timedelta,
    lease: timedelta,
) -> Claim | Replay:
    """Claim ``key`` for this request, or say how to answer a retry of an earlier one."""
    for _ in range(2):
        try:
            with unit_of_work(factory) as session:
                return _begin(session, principal_id, key, method, path, request_hash, ttl, lease)
        except IntegrityError:
            continue  # a concurrent first use inserted it: read theirs on the next pass
    raise Conflict("A request with this Idempotency-Key is in flight; retry later.")


def _begin(
    session: Session,
    principal_id: uuid.UUID,
    key: str,
    method: str,
    path: str,
    request_hash: str,
    ttl: timedelta,
    lease: timedelta,
) -> Claim | Replay:
    now = utcnow()
    record = repository.get_for_update(session, principal_id, key)
    if record is not None and record.expires_at <= now:
        session.delete(record)
        session.flush()
        record = None
    if record is None:
        record = IdempotencyRecord(
            principal_id=principal_id,
            key=key,
            method=method,
            path=path,
            request_hash=request_hash,
            state="in_flight",
            locked_until=now + lease,
            expires_at=now + ttl,
        )
        session.add(record)
        session.flush()
        return Claim(record.id)
    if (record.method, record.path, record.request_hash) != (method, path, request_hash):
        raise Unprocessable(
            "This Idempotency-Key was used with a different request; use a new key.",
            code="idempotency_key_reused",
        )
    if record.state == "completed":
        return Replay(record.response_status or 200, record.response_body)
    if record.locked_until is not None and record.locked_until > now:
        raise Conflict(
            "A request with this Idempotency-Key is still in flight; retry later.",
            code="idempotency_in_flight",
        )
    record.locked_until = now + lease  # the first holder died: take the key over
    return Claim(record.id)


def complete(session: Session, claim: Claim, status: int, body: Any) -> None:
    """Record the response in the request's unit of work (commits with the change)."""
    record = repository.get(session, claim.record_id)
    if record is None:
        raise Conflict("The idempotency claim expired before the request finished.")
    record.state = "completed"
    record.locked_until = None
    record.response_status = status
    record.response_body = body


def release(factory: sessionmaker[Session], claim: Claim) -> None:
    """Forget a claim whose request failed, so a retry runs afresh."""
    with unit_of_work(factory) as session:
        repository.delete_in_flight(session, claim.record_id)
