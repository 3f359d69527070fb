"""Every query on metric points."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.domain.metrics.models import MetricPoint
from app.domain.pagination import PageRequest, paginate


def add_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """One executemany INSERT for the whole batch (no ORM objects, no per-row round trip)."""
    session.execute(insert(MetricPoint), rows)


def history(
    session: Session,
    subject_type: str,
    subject_id: uuid.UUID,
    page: PageRequest,
    name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[Sequence[MetricPoint], str | None]:
    """A subject's points in the order they were received, oldest first."""
    stmt = select(MetricPoint).where(
        MetricPoint.subject_id == subject_id, MetricPoint.subject_type == subject_type
    )
    if name is not None:
        stmt = stmt.where(MetricPoint.name == name)
    if since is not None:
        stmt = stmt.where(MetricPoint.timestamp >= since)
    if until is not None:
        stmt = stmt.where(MetricPoint.timestamp < until)
    return paginate(session, stmt, MetricPoint.id, page, order="asc")
