"""A run's log as a live stream: each page of new lines is one event whose id is the log
cursor after it, so a client resuming with ``Last-Event-ID`` gets every line exactly once."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.db import unit_of_work
from app.domain.access import Principal
from app.domain.events.sse import Batch, frame, pump
from app.domain.runs import logs, service
from app.domain.runs.states import TERMINAL
from app.errors import AppError
from app.settings import Settings

PAGE_LINES = 1000
logger = logging.getLogger(__name__)


def _poll_logs(
    factory: sessionmaker[Session],
    principal: Principal,
    run_id: uuid.UUID,
    cursor: list[str | None],
) -> Batch:
    with unit_of_work(factory) as session:
        finished = service.get_run(session, principal, run_id).status in TERMINAL
    try:
        with unit_of_work(factory) as session:
            page = logs.read_logs(session, principal, run_id, cursor[0], PAGE_LINES)
    except AppError as error:  # the backend failed: say so; the client resumes later
        return _failed(error.status, error.detail)
    except Exception:  # e.g. a Last-Event-ID that is no cursor of this backend
        logger.exception("reading the log of run %s from cursor %r failed", run_id, cursor[0])
        return _failed(400, "The log could not be read from this Last-Event-ID.")
    batch = Batch(full=len(page.lines) >= PAGE_LINES)
    if page.lines:
        cursor[0] = page.next_cursor or cursor[0]
        batch.frames.append(frame(page.lines, cursor[0]))
    # No next cursor: an ended job read out. Otherwise the status was read before the lines,
    # so a finished run with nothing new has had every line sent.
    if (page.lines and page.next_cursor is None) or (finished and not page.lines):
        batch.frames.append(frame("{}", event="end"))
        batch.done = True
    return batch


def _failed(status: int, detail: str) -> Batch:
    problem = json.dumps({"status": status, "detail": detail})
    return Batch([frame(problem, event="error")], done=True)


async def run_log_stream(
    factory: sessionmaker[Session],
    principal: Principal,
    run_id: uuid.UUID,
    last_event_id: str | None,
    settings: Settings,
) -> AsyncIterator[bytes]:
    """Authorize (404 before anything is sent), then stream the job's log lines after
    ``last_event_id`` (a log cursor; none: from the start) until the run has ended."""

    def check() -> None:
        with unit_of_work(factory) as session:
            service.get_run(session, principal, run_id)

    await run_in_threadpool(check)
    cursor: list[str | None] = [last_event_id or None]

    def poll() -> Batch:
        return _poll_logs(factory, principal, run_id, cursor)

    return pump(poll, settings.observability)
