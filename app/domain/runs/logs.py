"""A run's job log, read from its backend with no transaction open."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.backends.base import BackendError, NotFoundError
from app.backends.registry import get_backend
from app.domain.access import Principal
from app.domain.runs import service
from app.errors import BadGateway, Conflict, ServiceUnavailable


class LogPage(BaseModel):
    lines: list[str]
    next_cursor: str | None


def read_logs(
    session: Session, principal: Principal, run_id: uuid.UUID, cursor: str | None, limit: int
) -> LogPage:
    """The job's log lines after ``cursor``, oldest first; ends the session's transaction
    before the backend is asked, so no connection is held while it reads."""
    target = service.log_target(session, principal, run_id)
    session.close()
    if target is None:  # not submitted yet
        return LogPage(lines=[], next_cursor=cursor)
    backend = get_backend(target[0])
    if backend is None:
        raise Conflict(f"No compute backend is configured for {target[0]!r}.", code="no_backend")
    try:
        page = backend.fetch_logs(target[1], cursor, limit)
    except NotFoundError:  # submitted, but the job has written nothing yet
        return LogPage(lines=[], next_cursor=cursor)
    except BackendError as error:
        if error.retryable:
            raise ServiceUnavailable(str(error), headers={"Retry-After": "1"}) from error
        raise BadGateway(str(error)) from error
    return LogPage(lines=list(page.lines), next_cursor=page.next_cursor)
