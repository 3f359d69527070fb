"""Every query on API keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
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


def count_active_admins(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.is_admin.is_(True), ApiKey.revoked_at.is_(None))
        )
        or 0
    )
