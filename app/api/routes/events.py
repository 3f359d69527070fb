"""Events: a project's event log, and live streams of it and of a run's log (SSE)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from app.api.deps import FactoryDep, PageDep, PrincipalDep, SessionDep, SettingsDep
from app.domain.events import service, stream
from app.domain.events.schemas import EventRead
from app.domain.events.sse import HEADERS, MEDIA_TYPE
from app.domain.runs import log_stream
from app.domain.schemas import Page
from app.errors import problem_responses

router = APIRouter(tags=["events"])

LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=2000,
        description="Resume after this event id (browsers send it when they reconnect).",
    ),
]


# One server-sent event as a client parses it from the stream.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "Resume after it with `Last-Event-ID`."},
        "event": {"type": "string", "description": "Its kind (`end` closes a log stream)."},
        "data": {"type": "string", "description": "JSON text."},
        "retry": {"type": "integer", "description": "Milliseconds to wait before reconnecting."},
    },
}


def _sse(description: str) -> dict[int | str, dict[str, Any]]:
    stream_doc: dict[int | str, dict[str, Any]] = {
        200: {
            "description": description,
            "content": {MEDIA_TYPE: {"schema": SSE_EVENT}},
        }
    }
    return {**stream_doc, **problem_responses(400, 401, 404)}


@router.get(
    "/v1/projects/{project_id}/events",
    response_model=Page[EventRead],
    summary="List a project's events",
    responses=problem_responses(400, 401, 404),
)
def list_events(
    project_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    type: Annotated[  # noqa: A002 - the filter is named after the field
        str | None,
        Query(
            max_length=64,
            pattern=r"^[a-z_.]+$",
            description="Only events whose type starts with this, e.g. `run.` or `run.failed`.",
        ),
    ] = None,
    subject_id: Annotated[
        uuid.UUID | None, Query(description="Only events about this object.")
    ] = None,
) -> Page[EventRead]:
    """Every state change in the project (runs, model versions, deployments, scaling, budget,
    webhooks), newest first, cursor-paged; each holds the object as the API showed it."""
    items, cursor = service.list_events(session, principal, project_id, page, type, subject_id)
    return Page(items=items, next_cursor=cursor)


@router.get(
    "/v1/projects/{project_id}/events/stream",
    summary="Stream a project's events (SSE)",
    response_class=StreamingResponse,
    responses=_sse("`text/event-stream`: one event per state change, `id:` is the event id."),
)
async def stream_events(
    project_id: uuid.UUID,
    principal: PrincipalDep,
    factory: FactoryDep,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """Server-sent events as they are recorded. Without `Last-Event-ID` the stream starts
    now; with it, it first sends everything after that id. Each event's data is the event as
    `GET .../events` shows it; a comment line is sent when quiet, and the stream ends after a
    while (STRATUS_OBSERVABILITY__STREAM_MAX_S) for the client to resume."""
    events = await stream.project_stream(factory, principal, project_id, last_event_id, settings)
    return StreamingResponse(events, media_type=MEDIA_TYPE, headers=HEADERS)


@router.get(
    "/v1/runs/{run_id}/logs/stream",
    summary="Stream a run's log (SSE)",
    response_class=StreamingResponse,
    responses={
        **_sse("`text/event-stream`: each event is a batch of lines, `id:` the log cursor."),
        **problem_responses(502, 503),
    },
)
async def stream_run_logs(
    run_id: uuid.UUID,
    principal: PrincipalDep,
    factory: FactoryDep,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """The job's log lines as server-sent events, one `data:` line per log line, from the
    start or after `Last-Event-ID`. An `end` event closes the stream once the run has ended
    and every line was sent; an `error` event reports a backend failure."""
    lines = await log_stream.run_log_stream(factory, principal, run_id, last_event_id, settings)
    return StreamingResponse(lines, media_type=MEDIA_TYPE, headers=HEADERS)
