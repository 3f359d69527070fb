"""Small fragments the open pages poll for live updates: status panels and decision rows as
HTML, chart data and log lines as JSON. All read-only."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from app.api.deps import SessionDep, SettingsDep
from app.domain.runs import logs
from app.domain.runs.states import RunStatus
from app.ui import views
from app.ui.auth import ViewerDep
from app.ui.pages import Cursor, deployment_view, run_view
from app.ui.rendering import render
from app.ui.routing import UiRoute

router = APIRouter(route_class=UiRoute)
LOG_LINES = 500


@router.get("/ui/projects/{project_id}/runs")
def project_run_rows(
    request: Request,
    project_id: uuid.UUID,
    session: SessionDep,
    viewer: ViewerDep,
    status: RunStatus | None = None,
    cursor: Cursor = None,
) -> Response:
    found, _ = views.project_runs(session, viewer.principal, project_id, status, cursor)
    return render(request, "_run_rows.html", {"ui": viewer, "runs": found})


router.get("/ui/runs/{run_id}/summary")(run_view("_run_summary.html"))


@router.get("/ui/runs/{run_id}/charts.json")
def run_charts(
    run_id: uuid.UUID,
    session: SessionDep,
    viewer: ViewerDep,
    settings: SettingsDep,
    x: views.XAxis = "time",
) -> Response:
    buckets = settings.ui.series_buckets
    found = views.run_charts(session, viewer.principal, run_id, buckets, x)
    return JSONResponse({"charts": found})


@router.get("/ui/runs/{run_id}/logs.json")
def run_log_lines(
    run_id: uuid.UUID,
    session: SessionDep,
    viewer: ViewerDep,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    page = logs.read_logs(session, viewer.principal, run_id, cursor, LOG_LINES)
    return JSONResponse(page.model_dump())


router.get("/ui/deployments/{deployment_id}/summary")(deployment_view("_deployment_summary.html"))


@router.get("/ui/deployments/{deployment_id}/decisions")
def deployment_decisions(
    request: Request, deployment_id: uuid.UUID, session: SessionDep, viewer: ViewerDep
) -> Response:
    found = views.decisions(session, viewer.principal, deployment_id)
    return render(request, "_decisions.html", {"ui": viewer, "decisions": found})


@router.get("/ui/deployments/{deployment_id}/charts.json")
def deployment_charts(
    deployment_id: uuid.UUID,
    session: SessionDep,
    viewer: ViewerDep,
    settings: SettingsDep,
    span: views.Span = "all",
) -> Response:
    buckets = settings.ui.series_buckets
    found = views.deployment_charts(session, viewer.principal, deployment_id, buckets, span)
    return JSONResponse({"charts": found})
