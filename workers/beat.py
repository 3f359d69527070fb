"""Celery beat with a single-active guard: only the holder of the "beat" lease fires.

Run as many ``celery beat`` processes as you like for availability; the others stand by and
take over within a lease period when the active one dies, or at once when it shuts down.
The schedule lives in memory (it comes from ``beat_schedule``), so there is no shelve file.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.beat import Scheduler
from sqlalchemy.exc import SQLAlchemyError

from app.db import unit_of_work
from app.domain.leases import service as leases
from app.settings import get_settings

logger = logging.getLogger(__name__)

LEASE_NAME = "beat"


def make_holder() -> str:
    """An id unique to this scheduler instance, readable in the leases table."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex}"


class GuardedScheduler(Scheduler):
    """An in-memory scheduler that fires due entries only while it holds the beat lease."""

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        lease_s = get_settings().worker.beat_lease_s
        self.lease_ttl = timedelta(seconds=lease_s)
        # Renewing at a third of the lease leaves two renewals of slack before a standby may
        # take over, and a stall longer than this makes the next tick re-check first.
        self.renew_every = lease_s / 3
        self.holder = make_holder()
        self.is_leader = False
        self._confirmed_at: float | None = None
        super().__init__(app, *args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Fire what is due while holding the lease; otherwise stand by and check again soon."""
        if not self._hold_lease():
            return self._standby_sleep()
        delay = super().tick(*args, **kwargs)
        return max(0.0, min(delay, self._until_renewal()))

    def close(self) -> None:
        """Release the lease so a standby takes over now, not when the lease runs out."""
        if self.is_leader:
            try:
                with unit_of_work() as session:
                    leases.release(session, LEASE_NAME, self.holder)
            except SQLAlchemyError:
                logger.warning("beat: could not release the lease; it expires on its own")
            self.is_leader = False
            self._confirmed_at = None
        super().close()

    @property
    def info(self) -> str:
        ttl = int(self.lease_ttl.total_seconds())
        return f"    . guard -> fires only while holding lease {LEASE_NAME!r} ({ttl}s)"

    def _hold_lease(self) -> bool:
        started = time.monotonic()
        if self.is_leader and self._until_renewal(started) > 0:
            return True
        try:
            with unit_of_work() as session:
                held = leases.try_acquire(session, LEASE_NAME, self.holder, self.lease_ttl)
        except SQLAlchemyError:
            # Without the database nobody can prove they are the only beat: fire nothing.
            logger.exception("beat: cannot reach the database for the lease; firing nothing")
            held = False
        if held and not self.is_leader:
            logger.info("beat: %s holds the lease and is the active scheduler", self.holder)
        elif self.is_leader and not held:
            logger.warning("beat: %s lost the lease; standing by", self.holder)
        self.is_leader = held
        # Timed from before the renewal, so the local view never outlives the stored lease.
        self._confirmed_at = started if held else None
        return held

    def _until_renewal(self, now: float | None = None) -> float:
        if self._confirmed_at is None:
            return 0.0
        elapsed = (time.monotonic() if now is None else now) - self._confirmed_at
        return self.renew_every - elapsed

    def _standby_sleep(self) -> float:
        return min(self.renew_every, float(self.max_interval or self.renew_every))
