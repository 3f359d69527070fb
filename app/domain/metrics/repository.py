"""Every write and page query on metric points; aggregates live in ``aggregates.py``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, and_, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.deployments.models import Deployment
from app.domain.metrics.models import MetricBatchRecord, MetricPoint, MetricRetention
from app.domain.pagination import PageRequest, paginate
from app.domain.projects.models import Membership
from app.domain.runs.models import TrainingRun

# (name, step, timestamp, value): the per-point part of a row; the subject part is shared.
PointRow = tuple[str, int | None, datetime, float]

_COPY = (
    "COPY metric_points (project_id, subject_type, subject_id, name, step, timestamp, value) "
    "FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES = ["uuid", "varchar", "uuid", "varchar", "int8", "timestamptz", "float8"]


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def add_many(
    session: Session,
    project_id: uuid.UUID,
    subject_type: str,
    subject_id: uuid.UUID,
    points: Sequence[PointRow],
) -> int:
    """Append points in the caller's transaction and return how many were stored.

    PostgreSQL gets one binary COPY on the session's own connection (so it commits or rolls
    back with the request); other databases get one executemany INSERT.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _copy(connection, (project_id, subject_type, subject_id), points)
    rows: list[dict[str, Any]] = [
        {
            "project_id": project_id,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "name": name,
            "step": step,
            "timestamp": timestamp,
            "value": value,
        }
        for name, step, timestamp, value in points
    ]
    # Core on the connection, not ORM bulk insert: only a cursor result reports its rowcount.
    return connection.execute(insert(MetricPoint), rows).rowcount


def _copy(connection: Connection, subject: tuple[Any, ...], points: Sequence[PointRow]) -> int:
    driver = cast("psycopg.Connection[Any]", connection.connection.driver_connection)
    with driver.cursor() as cursor:
        with cursor.copy(_COPY) as copy:
            copy.set_types(_COPY_TYPES)
            for point in points:
                copy.write_row(subject + point)
        return cursor.rowcount


def claim_batch(
    session: Session, subject_id: uuid.UUID, batch_id: str, accepted: int
) -> int | None:
    """Record a batch id for the subject: None when it is new, else its first use's count.

    A concurrent first use holds the unique key until it commits or rolls back, so a retry
    racing it waits here and then sees its outcome.
    """
    insert_ = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    stmt = (
        insert_(MetricBatchRecord)
        .values(subject_id=subject_id, batch_id=batch_id, accepted=accepted, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(MetricBatchRecord.accepted)
    )
    if session.execute(stmt).first() is not None:
        return None
    return session.scalar(
        select(MetricBatchRecord.accepted).where(
            MetricBatchRecord.subject_id == subject_id, MetricBatchRecord.batch_id == batch_id
        )
    )


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


def retention_days(session: Session, project_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Each project's retention in days; projects that keep points forever are absent."""
    if not project_ids:
        return {}
    rows = session.execute(
        select(MetricRetention.project_id, MetricRetention.days).where(
            MetricRetention.project_id.in_(project_ids)
        )
    )
    return dict(rows.all())


def set_retention(session: Session, project_id: uuid.UUID, days: int | None) -> None:
    """Keep the project's points ``days`` days, or forever when None."""
    row = session.get(MetricRetention, project_id)
    if days is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(MetricRetention(project_id=project_id, days=days))
    else:
        row.days = days
    session.flush()


def retention_policies(session: Session) -> list[tuple[uuid.UUID, int]]:
    rows = session.execute(select(MetricRetention.project_id, MetricRetention.days))
    return [(project_id, days) for project_id, days in rows]


def purge_points(session: Session, project_id: uuid.UUID, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` of the project's points older than ``before``."""
    doomed = (
        select(MetricPoint.id)
        .where(MetricPoint.project_id == project_id, MetricPoint.timestamp < before)
        .limit(limit)
        .scalar_subquery()
    )
    result = session.execute(
        delete(MetricPoint)
        .where(MetricPoint.id.in_(doomed))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def purge_batches(session: Session, before: datetime) -> int:
    """Forget batch ids recorded before ``before`` (retries of them are long over)."""
    result = session.execute(delete(MetricBatchRecord).where(MetricBatchRecord.created_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]


def subject_access(
    session: Session, subject_type: str, subject_id: uuid.UUID, principal_id: uuid.UUID
) -> tuple[uuid.UUID, str | None] | None:
    """(project id, the principal's role there or None) of a run or deployment, in one query.

    Ingest runs this on every batch, so the subject and the membership come back together.
    """
    table: type[TrainingRun] | type[Deployment] = (
        TrainingRun if subject_type == "run" else Deployment
    )
    row = session.execute(
        select(table.project_id, Membership.role)
        .outerjoin(
            Membership,
            and_(
                Membership.project_id == table.project_id, Membership.principal_id == principal_id
            ),
        )
        .where(table.id == subject_id)
    ).first()
    return None if row is None else (row[0], row[1])
