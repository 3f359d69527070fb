"""The guarded beat: of several schedulers on one database only the lease holder fires."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from celery.beat import ScheduleEntry
from celery.utils.imports import symbol_by_name
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from app.clock import utcnow
from app.domain.leases import service as leases
from app.domain.leases.models import Lease
from app.settings import get_settings
from tests.workers.conftest import UnitOfWork
from workers import beat
from workers.beat import LEASE_NAME, GuardedScheduler
from workers.celery_app import celery_app

pytestmark = pytest.mark.usefixtures("app_on_pg")


class RecordingScheduler(GuardedScheduler):
    """Records what it would send instead of publishing it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.fired: list[str] = []
        super().__init__(*args, **kwargs)
        # Check the lease on every tick, so a test sees each hand-over at once.
        self.renew_every = 0.0

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        assert entry.name is not None
        self.fired.append(entry.name)

    @property
    def producer(self) -> Any:  # no broker: apply_entry above never publishes
        return None


@pytest.fixture
def beat_app() -> Iterator[Celery]:
    app = Celery("beat-test", broker="memory://", set_as_current=False)
    app.conf.beat_schedule = {"often": {"task": "noop", "schedule": 0.02}}
    yield app
    app.close()


def run_ticks(*schedulers: RecordingScheduler, seconds: float = 0.3) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for scheduler in schedulers:
            scheduler.tick()
        time.sleep(0.01)


def holder(committed: UnitOfWork) -> str | None:
    with committed() as session:
        return leases.holder_of(session, LEASE_NAME)


def test_celery_uses_the_guarded_scheduler() -> None:
    assert symbol_by_name(celery_app.conf.beat_scheduler) is GuardedScheduler


def test_only_the_lease_holder_fires(beat_app: Celery, committed: UnitOfWork) -> None:
    first, second = RecordingScheduler(app=beat_app), RecordingScheduler(app=beat_app)
    run_ticks(first, second)
    assert first.fired, "the first to tick takes the lease and fires"
    assert second.fired == []
    assert first.is_leader
    assert not second.is_leader
    assert holder(committed) == first.holder


def test_sleeps_never_outlast_the_renewal(beat_app: Celery) -> None:
    lease_s = get_settings().worker.beat_lease_s
    beat_app.conf.beat_schedule = {}
    active, standby = GuardedScheduler(app=beat_app), GuardedScheduler(app=beat_app)
    active.tick()
    assert active.is_leader
    assert 0 <= active.tick() <= lease_s / 3, "wakes up in time to renew"
    assert standby.tick() == pytest.approx(lease_s / 3), "a standby asks again soon"
    assert not standby.is_leader
    active.close()


def test_a_standby_takes_over_when_the_holder_releases(
    beat_app: Celery, committed: UnitOfWork
) -> None:
    first, second = RecordingScheduler(app=beat_app), RecordingScheduler(app=beat_app)
    run_ticks(first, second)
    first.close()
    assert holder(committed) is None
    fired_before = len(first.fired)
    run_ticks(second, first)
    assert second.fired
    assert len(first.fired) == fired_before, "second took it at its next tick"
    assert holder(committed) == second.holder


def test_a_standby_takes_over_when_the_holders_lease_expires(
    beat_app: Celery, committed: UnitOfWork
) -> None:
    first, second = RecordingScheduler(app=beat_app), RecordingScheduler(app=beat_app)
    run_ticks(first, second)
    # The holder stops renewing (a dead process) until its lease runs out.
    with committed() as session:
        session.execute(
            update(Lease)
            .where(Lease.name == LEASE_NAME)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    run_ticks(second)
    assert second.fired
    assert holder(committed) == second.holder
    # The old holder comes back: it finds the lease taken and fires nothing more.
    fired_before = len(first.fired)
    run_ticks(first, second)
    assert len(first.fired) == fired_before
    assert not first.is_leader


def test_without_the_database_nothing_fires(
    beat_app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*_args: Any) -> bool:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(beat.leases, "try_acquire", unreachable)
    scheduler = RecordingScheduler(app=beat_app)
    run_ticks(scheduler)
    assert scheduler.fired == []
    assert not scheduler.is_leader


def test_a_lazy_scheduler_touches_nothing(beat_app: Celery, committed: UnitOfWork) -> None:
    # ``celery beat`` builds lazy instances for introspection; they must not take the lease.
    GuardedScheduler(app=beat_app, lazy=True)
    assert holder(committed) is None
