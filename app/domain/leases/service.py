"""Named leases: at most one live holder per name, taken over once it expires.

The lease is a row, not an advisory lock, so it works the same on SQLite and PostgreSQL and
survives a holder that dies without releasing (its lease simply runs out).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.leases import repository


def try_acquire(session: Session, name: str, holder: str, ttl: timedelta) -> bool:
    """Take or renew lease ``name`` for ``ttl``; False while another live holder has it."""
    now = utcnow()
    expires_at = now + ttl
    if repository.renew_or_take_over(session, name, holder, now, expires_at):
        return True
    if repository.exists(session, name):
        return False
    try:
        # A savepoint, so losing the insert race leaves the caller's transaction usable.
        with session.begin_nested():
            repository.insert(session, name, holder, expires_at)
    except IntegrityError:
        return False
    return True


def release(session: Session, name: str, holder: str) -> bool:
    """Give lease ``name`` up if ``holder`` still has it, so a standby need not wait it out."""
    return repository.delete_held(session, name, holder)


def holder_of(session: Session, name: str) -> str | None:
    """Who holds lease ``name`` now, or None when it is free or expired."""
    lease = repository.get(session, name)
    if lease is None or lease.expires_at < utcnow():
        return None
    return lease.holder
