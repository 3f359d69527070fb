"""Every query on console sessions."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.domain.api_keys.models import ApiKey
from app.domain.ui_sessions.models import UiSession


def add(session: Session, token_hash: str, api_key_id: uuid.UUID, expires_at: datetime) -> None:
    session.add(UiSession(token_hash=token_hash, api_key_id=api_key_id, expires_at=expires_at))
    session.flush()


def principal_of(
    session: Session, token_hash: str, now: datetime
) -> tuple[uuid.UUID, str, bool] | None:
    """(key id, name, is_admin) behind a live session whose key is not revoked."""
    row = session.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.is_admin)
        .join(UiSession, UiSession.api_key_id == ApiKey.id)
        .where(
            UiSession.token_hash == token_hash,
            UiSession.expires_at > now,
            ApiKey.revoked_at.is_(None),
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2])


def remove(session: Session, token_hash: str) -> None:
    session.execute(delete(UiSession).where(UiSession.token_hash == token_hash))


def remove_expired(session: Session, now: datetime) -> int:
    result = session.execute(delete(UiSession).where(UiSession.expires_at <= now))
    return int(getattr(result, "rowcount", 0) or 0)
