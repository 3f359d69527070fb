"""Claiming outbox messages: concurrent relays never claim the same row twice."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.db import unit_of_work
from app.domain.outbox import repository, service
from tests.workers.conftest import UnitOfWork

LEASE = timedelta(seconds=300)


def enqueue(uow: UnitOfWork, count: int) -> set[int]:
    with uow() as session:
        messages = [
            service.enqueue(session, service.RUN_SUBMIT, run_id=f"r{i}") for i in range(count)
        ]
        session.flush()
        return {m.id for m in messages}


def claim_until_empty(uow: UnitOfWork, contenders: int, batch: int) -> list[int]:
    """Several relays claim in a loop at once; every id any of them got, duplicates kept."""
    barrier = threading.Barrier(contenders)
    claimed: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def relay() -> None:
        try:
            barrier.wait()
            while True:
                with uow() as session:
                    ids = [m.id for m in repository.claim_due(session, utcnow(), LEASE, batch)]
                if not ids:
                    return
                with lock:
                    claimed.extend(ids)
        except BaseException as exc:  # surfaced below, so a thread failure fails the test
            errors.append(exc)

    threads = [threading.Thread(target=relay) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return claimed


def test_postgres_skip_locked_hands_each_row_to_one_open_transaction(
    committed: UnitOfWork, pg_engine: Engine
) -> None:
    ids = enqueue(committed, 10)
    factory = sessionmaker(bind=pg_engine, expire_on_commit=False)
    with factory() as first, factory() as second:
        now = utcnow()
        # The first claim's transaction is still open (rows locked) when the second runs.
        got_first = {m.id for m in repository.claim_due(first, now, LEASE, 6)}
        got_second = {m.id for m in repository.claim_due(second, now, LEASE, 6)}
        assert len(got_first) == 6
        assert got_second == ids - got_first
        first.commit()
        second.commit()
    with committed() as session:
        assert repository.claim_due(session, utcnow(), LEASE, 100) == []


def test_postgres_concurrent_relays_never_double_claim(committed: UnitOfWork) -> None:
    ids = enqueue(committed, 120)
    claimed = claim_until_empty(committed, contenders=6, batch=7)
    assert len(claimed) == len(set(claimed))
    assert set(claimed) == ids


def test_sqlite_fallback_never_double_claims(sqlite_factory: sessionmaker[Session]) -> None:
    def uow() -> AbstractContextManager[Session]:
        return unit_of_work(sqlite_factory)

    assert sqlite_factory.kw["bind"].dialect.name == "sqlite"
    ids = enqueue(uow, 120)
    claimed = claim_until_empty(uow, contenders=6, batch=7)
    assert len(claimed) == len(set(claimed))
    assert set(claimed) == ids


def test_a_claim_is_a_lease_not_an_acknowledgement(committed: UnitOfWork) -> None:
    (message_id,) = enqueue(committed, 1)
    now = utcnow()
    with committed() as session:
        assert [m.id for m in repository.claim_due(session, now, LEASE, 10)] == [message_id]
    with committed() as session:
        assert repository.claim_due(session, now + LEASE / 2, LEASE, 10) == []
        # Unacknowledged after its lease, the row is due again: a lost publish is retried.
        again = repository.claim_due(session, now + LEASE * 2, LEASE, 10)
        assert [m.id for m in again] == [message_id]
        assert again[0].processed_at is None
