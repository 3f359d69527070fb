"""The live event stream of a project: events after the client's ``Last-Event-ID``, in id
order, never skipping one that another transaction is still committing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.clock import utcnow
from app.db import unit_of_work
from app.domain.access import Principal, Role, authorize
from app.domain.events import repository
from app.domain.events.schemas import EventRead
from app.domain.events.sse import Batch, frame, pump
from app.errors import BadRequest, NotFound
from app.settings import Settings

POLL_LIMIT = 500
MAX_ID = 2**63  # event ids are BIGINT


def parse_last_id(value: str | None) -> int | None:
    """The event id a client resumes after; 400 for anything but a non-negative integer."""
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 19 or int(text) >= MAX_ID:
        raise BadRequest("Last-Event-ID must be the id of an event (a non-negative integer).")
    return int(text)


def safe_horizon(ids: list[tuple[int, object]], cursor: int, settle: timedelta) -> int | None:
    """The largest id a stream may pass: ids are handed out before commit, so an id missing
    below a fresh one may still appear; after ``settle`` it is taken to be rolled back."""
    expected = cursor + 1
    fresh_after = utcnow() - settle
    for event_id, created_at in ids:
        if event_id > expected and created_at > fresh_after:  # type: ignore[operator]
            return expected - 1
        expected = event_id + 1
    return None


def _poll_events(
    factory: sessionmaker[Session],
    principal: Principal,
    project_id: uuid.UUID,
    cursor: list[int],
    settle: timedelta,
) -> Batch:
    with unit_of_work(factory) as session:
        try:
            authorize(session, principal, project_id, Role.VIEWER)
        except NotFound:
            return Batch(done=True)  # membership ended while streaming
        rows = repository.after(session, project_id, cursor[0], POLL_LIMIT)
        if not rows:
            return Batch()
        ids = repository.ids_after(session, cursor[0], rows[-1].id)
        horizon = safe_horizon(list(ids), cursor[0], settle)
        shown = [r for r in rows if horizon is None or r.id <= horizon]
        batch = Batch(full=len(rows) == POLL_LIMIT and len(shown) == len(rows))
        for row in shown:
            event = EventRead.model_validate(row)
            batch.frames.append(frame(event.model_dump_json(), str(event.id)))
            cursor[0] = event.id
    return batch


def _start(factory: sessionmaker[Session], principal: Principal, project_id: uuid.UUID) -> int:
    with unit_of_work(factory) as session:
        authorize(session, principal, project_id, Role.VIEWER)
        return repository.latest_id(session, project_id)


async def project_stream(
    factory: sessionmaker[Session],
    principal: Principal,
    project_id: uuid.UUID,
    last_event_id: str | None,
    settings: Settings,
) -> AsyncIterator[bytes]:
    """Authorize (404 before anything is sent), then stream the project's events: those after
    ``last_event_id``, or from now on when none is given."""
    resume = parse_last_id(last_event_id)
    latest = await run_in_threadpool(_start, factory, principal, project_id)
    cursor = [latest if resume is None else resume]
    settle = timedelta(seconds=settings.observability.stream_settle_s)

    def poll() -> Batch:
        return _poll_events(factory, principal, project_id, cursor, settle)

    return pump(poll, settings.observability)
