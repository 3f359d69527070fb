"""The console's pages: each parses its input, resolves the signed-in caller, and asks one
view function for what to show."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from app.api.deps import SessionDep, SettingsDep
from app.domain.runs.states import RunStatus
from app.ui import views
from app.ui.auth import ViewerDep
from app.ui.rendering import render
from app.ui.routing import UiRoute

router = APIRouter(route_class=UiRoute)
Cursor = Annotated[str | None, Query(max_length=200)]


@router.get("/ui")
def console_root() -> Response:
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/")
def projects_index(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    page = views.projects_page(session, viewer.principal)
    return render(request, "projects.html", {"ui": viewer, **page})


@router.get("/ui/projects/{project_id}")
def project_detail(
    request: Request,
    project_id: uuid.UUID,
    session: SessionDep,
    viewer: ViewerDep,
    status: RunStatus | None = None,
    cursor: Cursor = None,
) -> Response:
    page = views.project_page(session, viewer.principal, project_id, status, cursor)
    return render(request, "project.html", {"ui": viewer, **page})


def run_view(template: str) -> Callable[..., Response]:
    """A run's page, or a fragment of it (the same data in another template)."""

    def show(
        request: Request, run_id: uuid.UUID, session: SessionDep, viewer: ViewerDep
    ) -> Response:
        page = views.run_page(session, viewer.principal, run_id)
        return render(request, template, {"ui": viewer, **page})

    return show


def deployment_view(template: str) -> Callable[..., Response]:
    """A deployment's page, or a fragment of it (the same data in another template)."""

    def show(
        request: Request, deployment_id: uuid.UUID, session: SessionDep, viewer: ViewerDep
    ) -> Response:
        page = views.deployment_page(session, viewer.principal, deployment_id)
        return render(request, template, {"ui": viewer, **page})

    return show


router.get("/ui/runs/{run_id}")(run_view("run.html"))


@router.get("/ui/compare")
def compare(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    settings: SettingsDep,
    runs: Annotated[list[str], Query(max_length=20)],
) -> Response:
    # ?runs=A,B and ?runs=A&runs=B (the project page's checkboxes) both name runs.
    ids = views.parse_run_ids(",".join(runs))
    page = views.compare_page(session, viewer.principal, ids, settings.ui.series_buckets)
    return render(request, "compare.html", {"ui": viewer, **page})


router.get("/ui/deployments/{deployment_id}")(deployment_view("deployment.html"))
