"""Who is signed in to the console: the session cookie, its CSRF token, and sign-in redirects."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import Depends, Request
from starlette.responses import Response

from app.api.deps import SessionDep, SettingsDep
from app.domain.access import Principal
from app.domain.ui_sessions import service as ui_sessions
from app.errors import Forbidden

SESSION_COOKIE = "stratus_session"
LOGIN_COOKIE = "stratus_login_csrf"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
MAX_FORM_BYTES = 64 * 1024


class SignInNeeded(Exception):  # noqa: N818 - a control-flow signal, not an error
    """No live session: the console answers with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in")
        self.next_path = next_path


@dataclass(frozen=True)
class Viewer:
    """The signed-in caller and the CSRF token its forms carry."""

    principal: Principal
    token: str
    csrf: str


def secure_cookies(request: Request) -> bool:
    """Secure everywhere but plain http on a loopback host (``stratus dev``), where a browser
    would otherwise never send the cookie back."""
    return not (request.url.scheme == "http" and request.url.hostname in LOOPBACK)


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        secure=secure_cookies(request),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    set_cookie(request, response, name, "", max_age=0)


def login_redirect(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/ui/login?next={quote(target, safe='')}"


def get_viewer(request: Request, session: SessionDep, settings: SettingsDep) -> Viewer:
    """The signed-in caller; a missing, expired or revoked session redirects to sign-in."""
    token = request.cookies.get(SESSION_COOKIE, "")
    principal = ui_sessions.principal_for(session, token) if token else None
    if principal is None:
        raise SignInNeeded(login_redirect(request))
    return Viewer(principal, token, ui_sessions.csrf_token(token, settings.key_pepper))


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


async def form_fields(request: Request) -> dict[str, str]:
    """An url-encoded form's fields (first value of each), read without a multipart parser."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Forbidden("The form is too large.")
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as error:
        raise Forbidden("The form could not be read.") from error
    return {k: v[0] for k, v in parsed.items()}


FormDep = Annotated[dict[str, str], Depends(form_fields)]


def get_checked_form(viewer: ViewerDep, form: FormDep, settings: SettingsDep) -> dict[str, str]:
    """A signed-in form post whose CSRF token matches the session's; 403 otherwise."""
    if not ui_sessions.csrf_valid(viewer.token, settings.key_pepper, form.get("csrf")):
        raise Forbidden("The form's security token is missing or stale: reload the page.")
    return form


CheckedFormDep = Annotated[dict[str, str], Depends(get_checked_form)]


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def safe_next(value: str | None) -> str:
    """Where to go after sign-in: a path of the console only (no open redirect)."""
    if value and value.startswith("/ui/") and not value.startswith("/ui//") and "\\" not in value:
        return value
    return "/ui/"
