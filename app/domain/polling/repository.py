"""Every query on poll cursors."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.domain.polling.models import PollCursor


def get_or_create(session: Session, name: str) -> PollCursor:
    cursor = session.get(PollCursor, name, with_for_update=True)
    if cursor is None:
        cursor = PollCursor(name=name, failures=0)
        session.add(cursor)
        session.flush()
    return cursor
