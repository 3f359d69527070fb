"""A run's job log, read from its backend with no transaction open."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from app.backends.base import BackendError, NotFoundError
from app.domain.access import Principal
from app.domain.backend_calls import backend_named, http_error
from app.domain.runs import service


class LogPage(BaseModel):
    lines: list[str] = Field(description="Log lines after the cursor, oldest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` to read on; null before the job wrote anything."
    )


def read_logs(
    session: Session, principal: Principal, run_id: uuid.UUID, cursor: str | None, limit: int
) -> LogPage:
    """The job's log lines after ``cursor``, oldest first; ends the session's transaction
    before the backend is asked, so no connection is held while it reads."""
    return read_job_logs(session, service.log_target(session, principal, run_id), cursor, limit)


def read_job_logs(
    session: Session, target: tuple[str, str] | None, cursor: str | None, limit: int
) -> LogPage:
    """The log of job ``target`` (backend, job name) after ``cursor``; None: not submitted."""
    session.close()
    if target is None:  # not submitted yet
        return LogPage(lines=[], next_cursor=cursor)
    backend = backend_named(target[0])
    try:
        page = backend.fetch_logs(target[1], cursor, limit)
    except NotFoundError:  # submitted, but the job has written nothing yet
        return LogPage(lines=[], next_cursor=cursor)
    except BackendError as error:
        raise http_error(error) from error
    return LogPage(lines=list(page.lines), next_cursor=page.next_cursor)
