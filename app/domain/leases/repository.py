"""Every query on named leases."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.domain.leases.models import Lease


def get(session: Session, name: str) -> Lease | None:
    return session.get(Lease, name)


def exists(session: Session, name: str) -> bool:
    return session.scalar(select(Lease.name).where(Lease.name == name)) is not None


def renew_or_take_over(
    session: Session, name: str, holder: str, now: datetime, expires_at: datetime
) -> bool:
    """``UPDATE … WHERE name = :n AND (holder = :me OR expires_at < :now)``; True when won.

    On PostgreSQL a concurrent taker blocks on the row and then re-checks the condition,
    so only one of two racing holders sees a row updated.
    """
    result = session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at < now))
        .values(holder=holder, expires_at=expires_at)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def insert(session: Session, name: str, holder: str, expires_at: datetime) -> None:
    """Create the lease row; raises IntegrityError when someone created it first."""
    session.add(Lease(name=name, holder=holder, expires_at=expires_at))
    session.flush()


def delete_held(session: Session, name: str, holder: str) -> bool:
    result = session.execute(
        delete(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def purge_expired(session: Session, before: datetime) -> int:
    """Delete leases that expired before ``before`` (their holders died without releasing)."""
    result = session.execute(delete(Lease).where(Lease.expires_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]
