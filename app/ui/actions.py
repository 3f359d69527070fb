"""Sign-in, sign-out and the console's buttons: every form carries a CSRF token, every change
goes through the same service function as the API's, then redirects back (post/redirect/get)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from starlette.responses import Response

from app.api.deps import SessionDep, SettingsDep
from app.domain.deployments import service as deployments
from app.domain.deployments.schemas import DeploymentUpdate
from app.domain.optimizer.schemas import WhatIfRequest
from app.domain.runs import service as runs
from app.domain.ui_sessions import service as ui_sessions
from app.errors import AppError, Unprocessable
from app.ui import views
from app.ui.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    CheckedFormDep,
    FormDep,
    ViewerDep,
    clear_cookie,
    get_checked_form,
    new_login_token,
    safe_next,
    set_cookie,
)
from app.ui.rendering import render
from app.ui.routing import UiRoute

router = APIRouter(route_class=UiRoute)
Model = TypeVar("Model", DeploymentUpdate, WhatIfRequest)
CSRF_CHECKED = Depends(get_checked_form)
NextPath = Annotated[str | None, Query(alias="next", max_length=2000)]


def _login_form(request: Request, next_path: str, error: str | None, status: int) -> Response:
    token = new_login_token()
    context = {"ui": None, "csrf": token, "next": safe_next(next_path), "error": error}
    response = render(request, "login.html", context, status_code=status)
    set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
    return response


@router.get("/ui/login")
def login_page(request: Request, next_path: NextPath = None) -> Response:
    return _login_form(request, next_path or "/ui/", None, 200)


@router.post("/ui/login")
def login(request: Request, form: FormDep, session: SessionDep, settings: SettingsDep) -> Response:
    """A valid key gets a session cookie that names a server-side session, never the key."""
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not ui_sessions.csrf_equal(expected, form.get("csrf", "")):
        return _login_form(request, form.get("next", ""), "The form expired: try again.", 403)
    lifetime = timedelta(hours=settings.ui.session_hours)
    try:
        signed = ui_sessions.sign_in(
            session,
            form.get("api_key", ""),
            settings.key_pepper,
            lifetime,
            replacing=request.cookies.get(SESSION_COOKIE, ""),
        )
    except AppError as error:
        return _login_form(request, form.get("next", ""), error.detail, error.status)
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    set_cookie(request, response, SESSION_COOKIE, signed.token, int(lifetime.total_seconds()))
    clear_cookie(request, response, LOGIN_COOKIE)
    return response


@router.post("/ui/logout", dependencies=[CSRF_CHECKED])
def logout(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    ui_sessions.sign_out(session, viewer.token)
    response = RedirectResponse("/ui/login", status_code=303)
    clear_cookie(request, response, SESSION_COOKIE)
    return response


@router.post("/ui/runs/{run_id}/stop", dependencies=[CSRF_CHECKED])
def stop_run(run_id: uuid.UUID, session: SessionDep, viewer: ViewerDep) -> Response:
    runs.stop_run(session, viewer.principal, run_id)
    return RedirectResponse(f"/ui/runs/{run_id}", status_code=303)


def _parsed(model: type[Model], data: Mapping[str, object]) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "form"
        raise Unprocessable(f"{where}: {first['msg']}") from error


def _integers(text: str, field: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(" ", ",").split(",") if part]
    except ValueError as error:
        raise Unprocessable(f"{field}: give whole numbers separated by commas.") from error


def _number(text: str, field: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError as error:
        raise Unprocessable(f"{field}: give a number.") from error


@router.post("/ui/deployments/{deployment_id}/scale")
def scale_deployment(
    deployment_id: uuid.UUID, session: SessionDep, viewer: ViewerDep, form: CheckedFormDep
) -> Response:
    counts = _integers(form.get("desired_instances", ""), "desired_instances")
    update = _parsed(DeploymentUpdate, {"desired_instances": counts[0] if counts else None})
    if update.desired_instances is None:
        raise Unprocessable("desired_instances: give a number of instances.")
    deployments.update_deployment(session, viewer.principal, deployment_id, update)
    return RedirectResponse(f"/ui/deployments/{deployment_id}", status_code=303)


@router.post("/ui/deployments/{deployment_id}/delete", dependencies=[CSRF_CHECKED])
def delete_deployment(deployment_id: uuid.UUID, session: SessionDep, viewer: ViewerDep) -> Response:
    deployments.delete_deployment(session, viewer.principal, deployment_id)
    return RedirectResponse(f"/ui/deployments/{deployment_id}", status_code=303)


@router.post("/ui/deployments/{deployment_id}/what-if")
def what_if(
    request: Request,
    deployment_id: uuid.UUID,
    session: SessionDep,
    viewer: ViewerDep,
    form: CheckedFormDep,
) -> Response:
    """Predicted p95, E and cost of the given counts (read-only: viewers may ask too)."""
    data = {
        "instances": _integers(form.get("instances", ""), "instances"),
        "load_rps": _number(form.get("load_rps", ""), "load_rps"),
    }
    page = views.what_if(session, viewer.principal, deployment_id, _parsed(WhatIfRequest, data))
    echo = {"what_if_instances": form.get("instances"), "what_if_load": form.get("load_rps")}
    return render(request, "deployment.html", {"ui": viewer, **page, **echo})
