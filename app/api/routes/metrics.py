"""Metric points of runs and deployments."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.deps import PageDep, PrincipalDep, SessionDep, WriteDep
from app.domain.metrics import service
from app.domain.metrics.schemas import (
    METRIC_NAME,
    MetricBatch,
    MetricPointRead,
    MetricsAccepted,
)
from app.domain.schemas import Page, UtcDatetime
from app.errors import problem_responses

router = APIRouter(tags=["metrics"])

NameFilter = Annotated[str | None, Query(pattern=METRIC_NAME, description="Only this metric")]
Since = Annotated[
    UtcDatetime | None, Query(description="Points at or after this time (naive = UTC)")
]
Until = Annotated[UtcDatetime | None, Query(description="Points before this time (naive = UTC)")]
INGEST_ERRORS = problem_responses(401, 403, 404, 409, 413, 422)
HISTORY_ERRORS = problem_responses(400, 401, 404, 422)


@router.post(
    "/v1/runs/{run_id}/metrics",
    status_code=201,
    response_model=MetricsAccepted,
    responses=INGEST_ERRORS,
)
def ingest_run_metrics(run_id: uuid.UUID, data: MetricBatch, write: WriteDep) -> JSONResponse:
    """Store a batch of points (all or nothing)."""
    return write.respond(service.ingest(write.session, write.principal, "run", run_id, data))


@router.get("/v1/runs/{run_id}/metrics", responses=HISTORY_ERRORS)
def run_metric_history(
    run_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    name: NameFilter = None,
    since: Since = None,
    until: Until = None,
) -> Page[MetricPointRead]:
    """The run's points, oldest first."""
    items, cursor = service.history(session, principal, "run", run_id, page, name, since, until)
    return Page(items=items, next_cursor=cursor)


@router.post(
    "/v1/deployments/{deployment_id}/metrics",
    status_code=201,
    response_model=MetricsAccepted,
    responses=INGEST_ERRORS,
)
def ingest_deployment_metrics(
    deployment_id: uuid.UUID, data: MetricBatch, write: WriteDep
) -> JSONResponse:
    """Store a batch of points (all or nothing)."""
    accepted = service.ingest(write.session, write.principal, "deployment", deployment_id, data)
    return write.respond(accepted)


@router.get("/v1/deployments/{deployment_id}/metrics", responses=HISTORY_ERRORS)
def deployment_metric_history(
    deployment_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    name: NameFilter = None,
    since: Since = None,
    until: Until = None,
) -> Page[MetricPointRead]:
    """The deployment's points, oldest first."""
    items, cursor = service.history(
        session, principal, "deployment", deployment_id, page, name, since, until
    )
    return Page(items=items, next_cursor=cursor)
