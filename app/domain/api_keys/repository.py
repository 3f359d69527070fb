"""Every query on API keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.domain.api_keys.models import ApiKey
from app.domain.pagination import PageRequest, paginate


def get(session: Session, key_id: uuid.UUID) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def principal_by_hash(session: Session, key_hash: str) -> tuple[uuid.UUID, str, bool] | None:
    """(id, name, is_admin) of the active key with this hash; runs on every request, so lean."""
    row = session.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.is_admin).where(
            ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2])


def list_keys(session: Session, page: PageRequest) -> tuple[Sequence[ApiKey], str | None]:
    return paginate(session, select(ApiKey), ApiKey.id, page)


def lock_active_admins(session: Session) -> set[uuid.UUID]:
    """Ids of the active admin keys, their rows locked until commit, so two admins revoking
    each other at once take turns and the second sees the first's revocation."""
    return set(
        session.scalars(
            select(ApiKey.id)
            .where(ApiKey.is_admin.is_(True), ApiKey.revoked_at.is_(None))
            .with_for_update()
        )
    )


def revoke_keeping_an_admin(session: Session, key_id: uuid.UUID, now: datetime) -> bool:
    """Revoke an active key unless it is the last active admin key; False then.

    The WHERE re-checks for another active admin in the same statement, for databases that do
    not lock rows.
    """
    other_admin = (
        select(ApiKey.id)
        .where(ApiKey.is_admin.is_(True), ApiKey.revoked_at.is_(None), ApiKey.id != key_id)
        .exists()
    )
    result = session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            ApiKey.revoked_at.is_(None),
            ApiKey.is_admin.is_(False) | other_admin,
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def count_active_admins(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.is_admin.is_(True), ApiKey.revoked_at.is_(None))
        )
        or 0
    )
