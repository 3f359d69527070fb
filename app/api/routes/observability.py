"""Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from app.api.deps import SessionDep, SettingsDep
from app.domain.monitoring import service
from app.errors import problem_responses

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **problem_responses(401, 403),
    },
    # A token is needed only from off the loopback: the security requirement is optional.
    openapi_extra={"security": [{}, {"bearerAuth": []}]},
)
def metrics(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Request counts and latency by route and status, task outcomes, backend calls and
    throttles, webhook deliveries, optimizer decisions (summed over every API and worker
    process), and runs, deployments and outbox backlog read from the database. Open on the
    loopback; elsewhere `Authorization: Bearer <STRATUS_OBSERVABILITY__METRICS_TOKEN>`."""
    host = request.client.host if request.client else None
    body, content_type = service.scrape(session, host, authorization, settings)
    return Response(body, media_type=content_type)
