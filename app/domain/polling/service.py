"""Poll windows per backend (and region): where to continue, and when not to poll yet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.polling import repository

# A change stamped just before the previous poll may only become visible after it.
SKEW = timedelta(seconds=5)
MAX_BACKOFF_S = 300.0


@dataclass(frozen=True)
class Window:
    """Changes after ``since`` (None: everything) are due; ``started_at`` ends this window."""

    since: datetime | None
    started_at: datetime


def open_window(session: Session, name: str) -> Window | None:
    """The window to poll now, or None while the poller is backing off."""
    cursor = repository.get_or_create(session, name)
    now = utcnow()
    if cursor.backoff_until is not None and cursor.backoff_until > now:
        return None
    since = cursor.synced_until - SKEW if cursor.synced_until else None
    return Window(since, now)


def close_window(session: Session, name: str, window: Window) -> None:
    """Everything up to the window's start has been applied."""
    cursor = repository.get_or_create(session, name)
    if cursor.synced_until is None or cursor.synced_until < window.started_at:
        cursor.synced_until = window.started_at
    cursor.failures = 0
    cursor.backoff_until = None


def back_off(session: Session, name: str, base_s: float) -> float:
    """Throttled or failing: wait exponentially longer before the next poll; the delay."""
    cursor = repository.get_or_create(session, name)
    cursor.failures += 1
    delay = float(min(MAX_BACKOFF_S, base_s * 2 ** min(cursor.failures - 1, 10)))
    cursor.backoff_until = utcnow() + timedelta(seconds=delay)
    return delay
