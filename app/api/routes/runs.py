"""Training runs."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from app.api.deps import PageDep, PrincipalDep, SessionDep, SettingsDep, WriteDep
from app.domain.runs import logs, service
from app.domain.runs.logs import LogPage
from app.domain.runs.schemas import RunCreate, RunRead
from app.domain.runs.states import RunStatus
from app.domain.schemas import Page, UtcDatetime
from app.errors import problem_responses

router = APIRouter(tags=["runs"])


@router.post(
    "/v1/projects/{project_id}/runs",
    status_code=201,
    response_model=RunRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def create_run(
    project_id: uuid.UUID, data: RunCreate, write: WriteDep, settings: SettingsDep
) -> JSONResponse:
    """Validate the spec and record a pending run; a worker submits it to the backend.

    Host paths (``source_dir``, ``file://`` channels, ``output_location``) must lie under the
    admin's STRATUS_BACKENDS__LOCAL__HOST_ROOTS and s3:// URIs under the project's
    ``backend_config.sagemaker.s3_prefixes``; anything else is a 422 naming the field.
    """
    return write.respond(
        service.create_run(write.session, write.principal, project_id, data, settings)
    )


@router.get(
    "/v1/projects/{project_id}/runs",
    response_model=Page[RunRead],
    responses=problem_responses(400, 401, 404),
)
def list_runs(
    project_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    status: RunStatus | None = None,
    backend: Annotated[
        Literal["local", "sagemaker", "vertex", "azureml", "watsonx", "external"] | None, Query()
    ] = None,
    created_after: UtcDatetime | None = None,
    created_before: UtcDatetime | None = None,
) -> Response:
    """A project's runs, newest first, filtered by status, backend and creation time."""
    items, cursor = service.list_runs(
        session, principal, project_id, page, status, backend, created_after, created_before
    )
    # Serialised once, straight from the validated models: the hot list skips FastAPI's second
    # validation of the return value.
    body = Page[RunRead](items=items, next_cursor=cursor).model_dump_json()
    return Response(body, media_type="application/json")


@router.get("/v1/runs/{run_id}", responses=problem_responses(401, 404))
def get_run(run_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> RunRead:
    """One run; viewers see its environment's keys with the values masked."""
    return service.get_run(session, principal, run_id)


@router.post(
    "/v1/runs/{run_id}/stop",
    status_code=202,
    responses=problem_responses(401, 403, 404, 409),
)
def stop_run(run_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> RunRead:
    """Ask the run to stop; a pending run stops at once, a submitted one via ``stopping``."""
    return service.stop_run(session, principal, run_id)


@router.get("/v1/runs/{run_id}/logs", responses=problem_responses(401, 404, 409, 502, 503))
def run_logs(
    run_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> LogPage:
    """The job's log lines after ``cursor``, oldest first; pass ``next_cursor`` to follow."""
    return logs.read_logs(session, principal, run_id, cursor, limit)
