"""Poll cursors: where each backend poller (per backend and region) continues from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.clock import utcnow
from app.db import Base
from app.types import UTCDateTime


class PollCursor(Base):
    __tablename__ = "poll_cursors"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    # Changes after this time have not been seen yet.
    synced_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Throttled: no poll before this time.
    backoff_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
