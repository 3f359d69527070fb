"""Housekeeping deletes only what has expired or was processed long ago."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.idempotency.models import IdempotencyRecord
from app.domain.outbox import service as outbox
from app.domain.outbox.models import OutboxMessage
from tests.workers.conftest import UnitOfWork
from workers.tasks.housekeeping import housekeeping

pytestmark = pytest.mark.usefixtures("app_on_pg")


def idempotency_record(session: Session, key: str, expires_in: timedelta) -> None:
    session.add(
        IdempotencyRecord(
            principal_id=uuid.uuid4(),
            key=key,
            method="POST",
            path="/v1/projects",
            request_hash="0" * 64,
            state="completed",
            response_status=201,
            response_body={},
            expires_at=utcnow() + expires_in,
        )
    )


def outbox_row(session: Session, name: str, age: timedelta, processed: bool) -> None:
    message = outbox.enqueue(session, outbox.RUN_SUBMIT, run_id=name)
    message.created_at = utcnow() - age
    message.processed_at = utcnow() - age if processed else None


def test_purges_only_expired_records_and_old_processed_rows(committed: UnitOfWork) -> None:
    day = timedelta(days=1)
    with committed() as session:
        idempotency_record(session, "expired", -timedelta(minutes=1))
        idempotency_record(session, "live", day)
        outbox_row(session, "processed-8d", 8 * day, processed=True)
        outbox_row(session, "processed-6d", 6 * day, processed=True)
        outbox_row(session, "processed-1h", timedelta(hours=1), processed=True)
        # Never processed, however old: it is work still to do.
        outbox_row(session, "pending-30d", 30 * day, processed=False)

    assert housekeeping() == {"idempotency_records": 1, "outbox": 1, "leases": 0}

    with committed() as session:
        assert session.scalars(select(IdempotencyRecord.key)).all() == ["live"]
        kept = session.scalars(select(OutboxMessage.payload["run_id"].as_string())).all()
        assert sorted(kept) == ["pending-30d", "processed-1h", "processed-6d"]
    assert housekeeping() == {"idempotency_records": 0, "outbox": 0, "leases": 0}
