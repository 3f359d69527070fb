"""Every query on the outbox. Claiming uses SKIP LOCKED where the database has it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.domain.outbox.models import OutboxMessage


def add(session: Session, topic: str, payload: dict[str, object]) -> OutboxMessage:
    message = OutboxMessage(topic=topic, payload=payload)
    session.add(message)
    return message


def get(session: Session, message_id: int) -> OutboxMessage | None:
    return session.get(OutboxMessage, message_id)


def claim_due(
    session: Session, now: datetime, lease: timedelta, limit: int
) -> Sequence[OutboxMessage]:
    """Lease up to ``limit`` due, unprocessed messages to this relay until ``now + lease``.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so concurrent relays never claim the same row.
    Elsewhere (SQLite serialises writers): a guarded UPDATE that only moves rows still due.
    """
    due = (
        select(OutboxMessage)
        .where(OutboxMessage.processed_at.is_(None), OutboxMessage.available_at <= now)
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        rows = session.scalars(due.with_for_update(skip_locked=True)).all()
        for row in rows:
            row.available_at = now + lease
        session.flush()
        return rows
    candidates = session.scalars(due).all()
    claimed = []
    for row in candidates:
        moved = session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == row.id,
                OutboxMessage.processed_at.is_(None),
                OutboxMessage.available_at <= now,
            )
            .values(available_at=now + lease)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(row)
    for row in claimed:
        session.refresh(row)
    return claimed


def pending_count(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.processed_at.is_(None))
        )
        or 0
    )


def purge_processed(session: Session, before: datetime) -> int:
    """Delete rows processed before ``before``; unprocessed rows are never touched."""
    result = session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.processed_at.is_not(None), OutboxMessage.processed_at < before
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
