"""Metric points of runs and deployments: ingest, history, series, latest, windows, retention."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import Principal, Role, check_role
from app.domain.audit import service as audit
from app.domain.metrics import aggregates, repository
from app.domain.metrics.repository import PointRow
from app.domain.metrics.schemas import (
    MAX_BATCH,
    LatestPoints,
    MetricBatch,
    MetricPointIn,
    MetricPointRead,
    MetricsAccepted,
    Series,
    SeriesBucket,
    SeriesSet,
    WindowStats,
)
from app.domain.pagination import PageRequest
from app.domain.schemas import as_utc
from app.errors import BadRequest, Conflict, NotFound, PayloadTooLarge, Unprocessable

SubjectType = Literal["run", "deployment"]


class InvalidPoint(Unprocessable):
    """A point that parsed but cannot be stored, answered like any validation error."""

    code, title = "validation_error", "Invalid request"


def _rows(points: Sequence[MetricPointIn], received: datetime) -> list[PointRow]:
    """Rows to store; a naive timestamp is UTC and a missing one is when the batch came."""
    rows: list[PointRow] = []
    append = rows.append
    for index, point in enumerate(points):
        timestamp = point.get("timestamp")
        if timestamp is None:
            timestamp = received
        elif timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=UTC)
        elif timestamp.year in (1, 9999):  # only at the ends can an offset leave the range
            try:
                timestamp = as_utc(timestamp)
            except ValueError as exc:
                loc = ["body", "points", index, "timestamp"]
                raise InvalidPoint(
                    f"body.points.{index}.timestamp: {exc}",
                    extra={"errors": [{"loc": loc, "msg": str(exc), "type": "value_error"}]},
                ) from exc
        append((point["name"], point.get("step"), timestamp, point["value"]))
    return rows


def _subject_project(
    session: Session,
    principal: Principal,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    need: Role,
) -> uuid.UUID:
    """The subject's project, once the caller is allowed ``need`` on it."""
    what = "Run" if subject_type == "run" else "Deployment"
    missing = NotFound(f"{what} {subject_id} not found.")
    found = repository.subject_access(session, subject_type, subject_id, principal.id)
    if found is None:
        raise missing
    project_id, role = found
    check_role(principal, role, need, missing)
    return project_id


def check_batch_size(batch: MetricBatch) -> None:
    """A batch over the cap is too large (413), not malformed."""
    size = len(batch["points"])
    if size > MAX_BATCH:
        raise PayloadTooLarge(
            f"A batch holds at most {MAX_BATCH:,} points; this one has {size:,}. "
            "Split it into several requests.",
            code="batch_too_large",
        )


def ingest(
    session: Session,
    principal: Principal,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    batch: MetricBatch,
) -> tuple[MetricsAccepted, bool]:
    """Store a validated batch whole, once; True with the first count when it is a retry."""
    check_batch_size(batch)
    project_id = _subject_project(session, principal, subject_type, subject_id, Role.EDITOR)
    points = batch["points"]
    rows = _rows(points, utcnow())
    batch_id = batch.get("batch_id")
    if batch_id is not None:
        first = repository.claim_batch(session, subject_id, batch_id, len(points))
        if first is not None:
            if first != len(points):
                raise Conflict(
                    f"batch_id {batch_id!r} was already used for a batch of {first} points; "
                    "a retry must resend the same batch.",
                    code="batch_id_reused",
                )
            return MetricsAccepted(accepted=first), True
    stored = repository.add_many(session, project_id, subject_type, subject_id, rows)
    if stored != len(points):
        # Raising rolls the whole request back: the answer never counts what was not stored.
        raise RuntimeError(f"stored {stored} of {len(points)} metric points")
    audit.record(
        session,
        principal,
        "metrics.ingest",
        subject_type,
        subject_id,
        project_id,
        {"count": stored} | ({"batch_id": batch_id} if batch_id else {}),
    )
    return MetricsAccepted(accepted=stored), False


def history(
    session: Session,
    principal: Principal,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    page: PageRequest,
    name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[MetricPointRead], str | None]:
    """A subject's points, oldest first by timestamp, of one name and a time window if given."""
    _subject_project(session, principal, subject_type, subject_id, Role.VIEWER)
    rows, cursor = repository.history(session, subject_type, subject_id, page, name, since, until)
    return [MetricPointRead.model_validate(r) for r in rows], cursor


def series(
    session: Session,
    principal: Principal,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    names: Sequence[str] | None,
    buckets: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> SeriesSet:
    """Metrics (default: every one of the subject) over [since, until) in equal time buckets.

    An open end of the range is the first or last point of the chosen metrics, so every
    series shares the same buckets.
    """
    _subject_project(session, principal, subject_type, subject_id, Role.VIEWER)
    if since is not None and until is not None and since >= until:
        raise BadRequest("since must be before until.")
    chosen = sorted(set(names)) if names else aggregates.names(session, subject_id)
    start, end = since, until
    if chosen and (start is None or end is None):
        first, last = aggregates.time_range(session, subject_id, chosen)
        start = start or first
        end = end or last
    if not chosen or start is None or end is None:
        return SeriesSet(since=start, until=end, bucket_seconds=0, items=[])
    width = max((end - start) / buckets, timedelta(microseconds=1))
    items = []
    for name in chosen:
        rows = aggregates.series(session, subject_id, name, start, width, buckets, since, until)
        items.append(
            Series(
                name=name,
                buckets=[
                    SeriesBucket(
                        start=start + width * b.index,
                        count=b.count,
                        min=b.min,
                        max=b.max,
                        mean=b.mean,
                        last=b.last,
                    )
                    for b in rows
                ],
            )
        )
    return SeriesSet(since=start, until=end, bucket_seconds=width.total_seconds(), items=items)


def latest(
    session: Session, principal: Principal, subject_type: SubjectType, subject_id: uuid.UUID
) -> LatestPoints:
    """The newest point (by timestamp) of each metric name of the subject."""
    _subject_project(session, principal, subject_type, subject_id, Role.VIEWER)
    rows = aggregates.latest(session, subject_id)
    return LatestPoints(items=[MetricPointRead.model_validate(r) for r in rows])


def window_aggregates(
    session: Session,
    subject_type: SubjectType,  # noqa: ARG001 - ids are unique across subject types
    subject_id: uuid.UUID,
    names: Sequence[str],
    since: datetime,
    until: datetime,
) -> dict[str, WindowStats]:
    """Count, mean and p95 of each named metric over [since, until), for the optimizer.

    Every requested name is in the answer; one without points has count 0 and None stats.
    """
    return aggregates.window_aggregates(session, subject_id, names, since, until)


def retention_days(session: Session, project_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Retention in days of each project that has one (the others keep points forever)."""
    return repository.retention_days(session, project_ids)


def forget_project(session: Session, project_id: uuid.UUID) -> int:
    """Queue the points of a project about to be deleted for deletion by housekeeping.

    Call it in the transaction that deletes the project, before the delete cascades to its runs
    and deployments (whose ids locate the points). Returns how many subjects were queued.
    """
    return repository.queue_project_purge(session, project_id, utcnow())


def set_retention(session: Session, project_id: uuid.UUID, days: int | None) -> None:
    """Keep a project's points ``days`` days, or forever when None."""
    repository.set_retention(session, project_id, days)


def purge_expired(
    session: Session, now: datetime, batch_ttl: timedelta, limit: int
) -> dict[str, int]:
    """Delete at most ``limit`` points of deleted projects or past their project's retention,
    and stale batch ids.

    Callers repeat it, one short transaction each, until fewer than ``limit`` points go.
    """
    points = repository.purge_queued(session, limit)
    for project_id, days in repository.retention_policies(session):
        if points >= limit:
            break
        points += repository.purge_points(
            session, project_id, now - timedelta(days=days), limit - points
        )
    return {
        "metric_points": points,
        "metric_batches": repository.purge_batches(session, now - batch_ttl),
    }
