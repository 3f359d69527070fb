"""Every query on idempotency records."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.domain.idempotency.models import IdempotencyRecord


def get_for_update(session: Session, principal_id: uuid.UUID, key: str) -> IdempotencyRecord | None:
    return session.scalar(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.principal_id == principal_id, IdempotencyRecord.key == key)
        .with_for_update()
    )


def get(session: Session, record_id: uuid.UUID) -> IdempotencyRecord | None:
    return session.get(IdempotencyRecord, record_id)


def delete_in_flight(session: Session, record_id: uuid.UUID) -> None:
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.id == record_id, IdempotencyRecord.state == "in_flight"
        )
    )


def purge_expired(session: Session, now: datetime) -> int:
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < now))
    return int(result.rowcount)  # type: ignore[attr-defined]
