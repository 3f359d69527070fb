"""Metric points of runs and deployments: ingest, history, series, latest, windows, retention."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.domain.access import RANK, Principal, Role, check_role
from app.domain.audit import service as audit
from app.domain.metrics import aggregates, repository, steps
from app.domain.metrics.points import admit_non_finite, copy_stream
from app.domain.metrics.points import rows as point_rows
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
from app.domain.quotas import service as quotas
from app.errors import BadRequest, Conflict, NotFound, PayloadTooLarge

SubjectType = Literal["run", "deployment", "evaluation"]


# The roles that may add points, for the database to check along with the batch's claim.
_WRITERS = tuple(role.value for role in Role if RANK[role] >= RANK[Role.EDITOR])


def _project_of(
    principal: Principal,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    found: tuple[uuid.UUID, str | None] | None,
    need: Role,
) -> uuid.UUID:
    """The subject's project from its (project id, caller's role) row, once the caller is
    allowed ``need`` there; another project's subject is as missing as an unknown one."""
    what = subject_type.capitalize()
    missing = NotFound(f"{what} {subject_id} not found.")
    if found is None:
        raise missing
    project_id, role = found
    check_role(principal, role, need, missing)
    return project_id


def _subject_project(
    session: Session,
    principal: Principal,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    need: Role,
) -> uuid.UUID:
    """The subject's project, once the caller is allowed ``need`` on it."""
    found = repository.subject_access(session, subject_type, subject_id, principal.id)
    return _project_of(principal, subject_type, subject_id, found, need)


def check_batch_size(batch: MetricBatch) -> None:
    """A batch over the cap is too large (413), not malformed; non-finite values only where
    the batch allows them (422)."""
    size = len(batch["points"])
    if size > MAX_BATCH:
        raise PayloadTooLarge(
            f"A batch holds at most {MAX_BATCH:,} points; this one has {size:,}. "
            "Split it into several requests.",
            code="batch_too_large",
        )
    admit_non_finite(batch)


def ingest(
    session: Session,
    principal: Principal,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    batch: MetricBatch,
) -> tuple[MetricsAccepted, bool]:
    """Store a validated batch whole, once; True with the first count when it is a retry.

    On PostgreSQL it takes one statement (access, batch id claim, audit event) and one COPY.
    """
    check_batch_size(batch)
    points = batch["points"]
    batch_id = batch.get("batch_id")
    details = {"count": len(points)} | ({"batch_id": batch_id} if batch_id else {})
    if not repository.copies(session):
        return _ingest_portably(session, principal, subject_type, subject_id, batch, details)
    event = audit.event_values(principal, "metrics.ingest", subject_type, subject_id, details)
    opened = repository.open_batch(
        session,
        subject_type,
        subject_id,
        _WRITERS,
        principal.is_admin,
        batch_id,
        len(points),
        event,
    )
    found = None if opened is None else (opened.project_id, opened.role)
    project_id = _project_of(principal, subject_type, subject_id, found, Role.EDITOR)
    stream = copy_stream(project_id, subject_type, subject_id, points, utcnow())
    if batch_id is not None and opened is not None and not opened.claimed:
        return _replay(batch_id, repository.batch_count(session, subject_id, batch_id), points)
    quotas.check_metric_names(session, subject_type, subject_id, {p["name"] for p in points})
    _check_stored(repository.copy_stream(session, stream), points)
    return MetricsAccepted(accepted=len(points)), False


def _ingest_portably(
    session: Session,
    principal: Principal,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    batch: MetricBatch,
    details: dict[str, Any],
) -> tuple[MetricsAccepted, bool]:
    """``ingest`` where there is no ``open_batch`` (SQLite): a statement for each step."""
    project_id = _subject_project(session, principal, subject_type, subject_id, Role.EDITOR)
    points = batch["points"]
    rows = point_rows(points, utcnow())
    batch_id = batch.get("batch_id")
    if batch_id is not None:
        first = repository.claim_batch(session, subject_id, batch_id, len(points))
        if first is not None:
            return _replay(batch_id, first, points)
    quotas.check_metric_names(session, subject_type, subject_id, {p["name"] for p in points})
    _check_stored(repository.add_many(session, project_id, subject_type, subject_id, rows), points)
    audit.record(
        session, principal, "metrics.ingest", subject_type, subject_id, project_id, details
    )
    return MetricsAccepted(accepted=len(points)), False


def _replay(
    batch_id: str, first: int | None, points: Sequence[MetricPointIn]
) -> tuple[MetricsAccepted, bool]:
    """A retry of a stored batch: its first count, or 409 if the batch id was another's."""
    if first != len(points):
        raise Conflict(
            f"batch_id {batch_id!r} was already used for a batch of {first} points; "
            "a retry must resend the same batch.",
            code="batch_id_reused",
        )
    return MetricsAccepted(accepted=first), True


def _check_stored(stored: int, points: Sequence[MetricPointIn]) -> None:
    if stored != len(points):
        # Raising rolls the whole request back: the answer never counts what was not stored.
        raise RuntimeError(f"stored {stored} of {len(points)} metric points")


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


def step_series(
    session: Session,
    principal: Principal,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    buckets: int,
) -> list[steps.StepSeries]:
    """Each metric of the subject whose points carry steps, against the step, downsampled to
    at most ``buckets`` buckets of steps (bucket means)."""
    _subject_project(session, principal, subject_type, subject_id, Role.VIEWER)
    out = []
    for name in aggregates.names(session, subject_id):
        ends = steps.step_range(session, subject_id, name)
        if ends is None:
            continue
        width = steps.step_width(*ends, buckets)
        rows = steps.by_step(session, subject_id, name, ends[0], width, buckets)
        x = [ends[0] + width * b.index for b in rows]
        out.append(steps.StepSeries(name=name, steps=x, means=[b.mean for b in rows]))
    return out


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
