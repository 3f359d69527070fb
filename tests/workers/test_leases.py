"""Named leases on the real PostgreSQL and on the embedded SQLite database."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.clock import utcnow
from app.db import unit_of_work
from app.domain.leases import service as leases
from app.domain.leases.models import Lease
from tests.workers.conftest import UnitOfWork

TTL = timedelta(seconds=30)


@pytest.fixture(params=["postgresql", "sqlite"])
def uow(
    request: pytest.FixtureRequest,
) -> UnitOfWork:
    if request.param == "postgresql":
        committed: UnitOfWork = request.getfixturevalue("committed")
        return committed
    factory: sessionmaker[Session] = request.getfixturevalue("sqlite_factory")
    return lambda: unit_of_work(factory)


def acquire(uow: UnitOfWork, holder: str, name: str = "beat") -> bool:
    with uow() as session:
        return leases.try_acquire(session, name, holder, TTL)


def expire(uow: UnitOfWork, name: str = "beat") -> None:
    with uow() as session:
        session.execute(
            update(Lease).where(Lease.name == name).values(expires_at=utcnow() - timedelta(1))
        )


def test_first_taker_holds_and_renews_others_are_refused(uow: UnitOfWork) -> None:
    assert acquire(uow, "a")
    assert acquire(uow, "a"), "the holder renews its own lease"
    assert not acquire(uow, "b")
    with uow() as session:
        assert leases.holder_of(session, "beat") == "a"
    assert acquire(uow, "b", name="other"), "leases of other names are independent"


def test_an_expired_lease_is_taken_over(uow: UnitOfWork) -> None:
    assert acquire(uow, "a")
    expire(uow)
    assert acquire(uow, "b")
    assert not acquire(uow, "a"), "the old holder does not get it back while b's is live"


def test_release_frees_the_lease_only_for_its_holder(uow: UnitOfWork) -> None:
    assert acquire(uow, "a")
    with uow() as session:
        assert not leases.release(session, "beat", "b")
    assert not acquire(uow, "b")
    with uow() as session:
        assert leases.release(session, "beat", "a")
        assert leases.holder_of(session, "beat") is None
    assert acquire(uow, "b")


@pytest.mark.parametrize("expired", [False, True], ids=["free", "expired"])
def test_racing_takers_get_it_exactly_once(uow: UnitOfWork, expired: bool) -> None:
    if expired:
        assert acquire(uow, "dead")
        expire(uow)
    contenders = 8
    barrier = threading.Barrier(contenders)
    won: list[str] = []

    def contend(holder: str) -> None:
        barrier.wait()
        if acquire(uow, holder):
            won.append(holder)

    threads = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    with uow() as session:
        assert leases.holder_of(session, "beat") == won[0]
