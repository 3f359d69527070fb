"""Every write and page query on metric points; aggregates live in ``aggregates.py``."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    and_,
    delete,
    func,
    insert,
    literal,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from app.clock import utcnow
from app.domain.deployments.models import Deployment
from app.domain.evaluations.models import Evaluation
from app.domain.metrics.models import (
    MetricBatchRecord,
    MetricPoint,
    MetricPurge,
    MetricRetention,
)
from app.domain.pagination import PageRequest
from app.domain.projects.models import Membership
from app.domain.runs.models import TrainingRun
from app.errors import BadRequest

# (name, step, timestamp, value): the per-point part of a row; the subject part is shared.
PointRow = tuple[str, int | None, datetime, float | None]  # value None: NaN

_COPY = (
    "COPY metric_points (project_id, subject_type, subject_id, name, step, timestamp, value) "
    "FROM STDIN (FORMAT BINARY)"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PURGE_SUBJECTS_PER_CALL = 1000
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


def copy_stream(session: Session, stream: bytes) -> int:
    """Append a ready binary COPY stream (``points.copy_stream``) in the caller's transaction
    on PostgreSQL, and return how many rows it stored."""
    driver = cast("psycopg.Connection[Any]", session.connection().connection.driver_connection)
    with driver.cursor() as cursor:
        with cursor.copy(_COPY) as copy:
            copy.write(stream)
        return cursor.rowcount


def copies(session: Session) -> bool:
    """Whether the session's database takes ``copy_stream`` and ``open_batch`` (PostgreSQL)."""
    return _dialect(session) == "postgresql"


# Ingest's one statement before its COPY: the subject's project and the caller's role there,
# and, only if that role may write, the batch id's claim and the audit event of the batch
# (the latter only when the batch is new). It all rolls back with the request if the
# points then fail to store.
_OPEN_BATCH = """
WITH subject AS (
    SELECT s.project_id, m.role
    FROM {subjects} AS s
    LEFT JOIN memberships AS m
        ON m.project_id = s.project_id AND m.principal_id = %(actor_id)s
    WHERE s.id = %(subject_id)s
), allowed AS (
    SELECT project_id FROM subject WHERE %(any_role)s OR role = ANY(%(roles)s)
), claim AS (
    INSERT INTO metric_batches (subject_id, batch_id, accepted, created_at)
    SELECT %(subject_id)s, %(batch_id)s, %(count)s, %(created_at)s FROM allowed
    WHERE %(batch_id)s::varchar IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING accepted
), audit AS (
    INSERT INTO audit_events
        (id, project_id, actor_id, action, object_type, object_id, details, created_at)
    SELECT %(id)s, project_id, %(actor_id)s, %(action)s, %(object_type)s, %(object_id)s,
        %(details)s, %(created_at)s
    FROM allowed
    WHERE %(batch_id)s::varchar IS NULL OR EXISTS (SELECT FROM claim)
)
SELECT project_id, role, EXISTS (SELECT FROM claim) FROM subject
"""
_OPEN_BATCH_SQL = {
    "run": _OPEN_BATCH.format(subjects=TrainingRun.__tablename__),
    "deployment": _OPEN_BATCH.format(subjects=Deployment.__tablename__),
}


class OpenedBatch(NamedTuple):
    project_id: uuid.UUID
    role: str | None  # the principal's role on the project; None when not a member
    claimed: bool  # the batch id was new and is now this batch's (False without a batch id)


def open_batch(
    session: Session,
    subject_type: str,
    subject_id: uuid.UUID,
    writers: Sequence[str],
    any_role: bool,
    batch_id: str | None,
    count: int,
    event: dict[str, Any],
) -> OpenedBatch | None:
    """One round trip on PostgreSQL: the subject's project and the actor's role there; if
    the role is one of ``writers`` (or ``any_role``), also claim ``batch_id`` for ``count``
    points and add the audit ``event`` (``audit.service.event_values``) of a new batch.

    None when the subject does not exist. A concurrent first use of the batch id holds its
    key until it commits or rolls back, so a retry racing it waits here for the outcome.
    """
    driver = cast("psycopg.Connection[Any]", session.connection().connection.driver_connection)
    params = event | {
        "subject_id": subject_id,
        "roles": list(writers),
        "any_role": any_role,
        "batch_id": batch_id,
        "count": count,
        "details": Jsonb(event["details"]),
    }
    with driver.cursor() as cursor:
        row = cursor.execute(_OPEN_BATCH_SQL[subject_type], params).fetchone()
    return None if row is None else OpenedBatch(row[0], row[1], bool(row[2]))


def batch_count(session: Session, subject_id: uuid.UUID, batch_id: str) -> int | None:
    """How many points the first use of ``batch_id`` for the subject stored."""
    return session.scalar(
        select(MetricBatchRecord.accepted).where(
            MetricBatchRecord.subject_id == subject_id, MetricBatchRecord.batch_id == batch_id
        )
    )


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
    return batch_count(session, subject_id, batch_id)


def history(
    session: Session,
    subject_type: str,
    subject_id: uuid.UUID,
    page: PageRequest,
    name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[Sequence[MetricPoint], str | None]:
    """A subject's points oldest first by timestamp (equal timestamps in the order received).

    Each page is a range of the (subject, name, timestamp, id) index after the cursor's key. With
    no name on PostgreSQL, each of the subject's names contributes its first ``limit + 1`` points
    after the cursor and the page is the first of those, so a page costs names × limit index
    entries however long the subject's history is.
    """
    after = decode_point_cursor(page.cursor) if page.cursor is not None else None
    conditions = _range(MetricPoint, since, until, after)
    key = (MetricPoint.timestamp, MetricPoint.id)
    if name is not None or _dialect(session) != "postgresql":
        stmt = select(MetricPoint).where(
            MetricPoint.subject_id == subject_id,
            MetricPoint.subject_type == subject_type,
            *conditions,
        )
        if name is not None:
            stmt = stmt.where(MetricPoint.name == name)
    else:
        names = subject_names_cte(subject_id)
        inner = aliased(MetricPoint)
        per_name = (
            select(inner.id, inner.timestamp)
            .where(
                inner.subject_id == subject_id,
                inner.name == names.c.name,
                *_range(inner, since, until, after),
            )
            .order_by(inner.timestamp, inner.id)
            .limit(page.limit + 1)
            .lateral()
        )
        ids = (
            select(per_name.c.id)
            .select_from(names)
            .join(per_name, true())
            .where(names.c.name.is_not(None))
            .order_by(per_name.c.timestamp, per_name.c.id)
            .limit(page.limit + 1)
        )
        stmt = select(MetricPoint).where(
            MetricPoint.id.in_(ids), MetricPoint.subject_type == subject_type
        )
    rows = session.scalars(stmt.order_by(*key).limit(page.limit + 1)).all()
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    return rows, encode_point_cursor(rows[-1].timestamp, rows[-1].id)


def _range(
    table: type[MetricPoint],
    since: datetime | None,
    until: datetime | None,
    after: tuple[datetime, int] | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(table.timestamp >= since)
    if until is not None:
        conditions.append(table.timestamp < until)
    if after is not None:
        key = tuple_(literal(after[0], table.timestamp.type), literal(after[1], table.id.type))
        conditions.append(tuple_(table.timestamp, table.id) > key)
    return conditions


def encode_point_cursor(timestamp: datetime, point_id: int) -> str:
    """An opaque cursor for the (timestamp, id) key of a page's last point."""
    aware = timestamp if timestamp.tzinfo is not None else timestamp.replace(tzinfo=UTC)
    micros = (aware - _EPOCH) // timedelta(microseconds=1)
    raw = f"p:{micros}:{point_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_point_cursor(cursor: str) -> tuple[datetime, int]:
    """The (timestamp, id) a point cursor stands for; a malformed one is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, micros, point_id = raw.split(":")
        if kind == "p" and -(2**63) <= int(point_id) < 2**63:  # ids are BIGINT
            return _EPOCH + timedelta(microseconds=int(micros)), int(point_id)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        pass
    raise BadRequest("The cursor is not valid; pass next_cursor from a previous page.")


def names_with_points(session: Session, subject_id: uuid.UUID, names: Sequence[str]) -> set[str]:
    """Which of ``names`` already have a point for the subject (one index probe per name)."""
    if not names:
        return set()
    probes = [
        select(literal(name).label("name")).where(
            select(MetricPoint.id)
            .where(MetricPoint.subject_id == subject_id, MetricPoint.name == name)
            .exists()
        )
        for name in names
    ]
    return set(session.scalars(union_all(*probes)).all())


def subject_names_cte(subject_id: uuid.UUID) -> CTE:
    """The subject's distinct metric names (plus one NULL row that ends the walk).

    A recursive walk of the index: one probe per distinct name, not a scan of every point.
    """
    inner = aliased(MetricPoint)
    names = (
        select(func.min(MetricPoint.name).label("name"))
        .where(MetricPoint.subject_id == subject_id)
        .cte("names", recursive=True)
    )
    following = (
        select(func.min(inner.name))
        .where(inner.subject_id == subject_id, inner.name > names.c.name)
        .scalar_subquery()
    )
    return names.union_all(select(following).where(names.c.name.is_not(None)))


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


def queue_project_purge(session: Session, project_id: uuid.UUID, now: datetime) -> int:
    """Queue every run and deployment of the project for point deletion; returns how many."""
    subjects = union_all(
        select(TrainingRun.id, TrainingRun.project_id).where(TrainingRun.project_id == project_id),
        select(Deployment.id, Deployment.project_id).where(Deployment.project_id == project_id),
    ).subquery()
    insert_ = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    stmt = (
        insert_(MetricPurge)
        .from_select(
            ["subject_id", "project_id", "requested_at"],
            # "WHERE true": SQLite cannot otherwise tell ON CONFLICT from a join's ON.
            select(
                subjects.c.id, subjects.c.project_id, literal(now, MetricPurge.requested_at.type)
            ).where(true()),
        )
        .on_conflict_do_nothing()
    )
    return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def purge_queued(session: Session, limit: int) -> int:
    """Delete up to ``limit`` points of queued subjects, oldest request first; a subject whose
    points are all gone leaves the queue."""
    deleted = 0
    # A large project queues many subjects; one call looks at a bounded slice of them.
    queued = session.scalars(
        select(MetricPurge.subject_id)
        .order_by(MetricPurge.requested_at, MetricPurge.subject_id)
        .limit(PURGE_SUBJECTS_PER_CALL)
    )
    for subject_id in queued.all():
        want = limit - deleted
        if want <= 0:
            break
        doomed = (
            select(MetricPoint.id)
            .where(MetricPoint.subject_id == subject_id)
            .limit(want)
            .scalar_subquery()
        )
        gone = int(
            session.execute(  # type: ignore[attr-defined]
                delete(MetricPoint)
                .where(MetricPoint.id.in_(doomed))
                .execution_options(synchronize_session=False)
            ).rowcount
        )
        deleted += gone
        if gone < want:
            session.execute(delete(MetricPurge).where(MetricPurge.subject_id == subject_id))
    return deleted


def purge_batches(session: Session, before: datetime) -> int:
    """Forget batch ids recorded before ``before`` (retries of them are long over)."""
    result = session.execute(delete(MetricBatchRecord).where(MetricBatchRecord.created_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]


SUBJECT_TABLES: dict[str, type[TrainingRun] | type[Deployment] | type[Evaluation]] = {
    "run": TrainingRun,
    "deployment": Deployment,
    "evaluation": Evaluation,
}


def subject_access(
    session: Session, subject_type: str, subject_id: uuid.UUID, principal_id: uuid.UUID
) -> tuple[uuid.UUID, str | None] | None:
    """(project id, the principal's role there or None) of a run, deployment or evaluation, in
    one query (on PostgreSQL, ingest gets the same from ``open_batch``)."""
    table = SUBJECT_TABLES[subject_type]
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
