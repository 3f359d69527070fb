"""One place that turns every error into ``application/problem+json``."""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from app.api.deps import IdempotentReplay, replay_response
from app.api.inputs import is_json
from app.db import UNREACHABLE, unreachable
from app.errors import PROBLEM_JSON, AppError, DatabaseUnavailable

log = logging.getLogger("stratus.api")

_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("unprocessable", "Unprocessable request"),
    429: ("rate_limited", "Too many requests"),
}


def problem(
    request: Request, status: int, code: str, title: str, detail: str, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://stratus.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path,
    }
    body.update(extra)
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON)


@lru_cache(maxsize=1024)
def _path_regex(path: str) -> re.Pattern[str]:
    return compile_path(path)[0]


def _allowed_methods(app: FastAPI, path: str) -> str:
    """Every method some route serves at ``path`` (the router names only the first match's)."""
    methods: set[str] = set()
    for context in iter_route_contexts(app.routes):
        if context.path and context.methods and _path_regex(context.path).match(path):
            methods |= context.methods
    return ", ".join(sorted(methods))


def _about_body(exc: RequestValidationError) -> bool:
    return any(tuple(e.get("loc", ()))[:1] == ("body",) for e in exc.errors())


def _json_error(exc: RequestValidationError) -> dict[str, Any] | None:
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return dict(error)
    return None


def _where_in(body: bytes, position: int) -> str:
    """A character offset in ``body`` as words: line, column and character."""
    text = body.decode("utf-8", "replace")[:position]
    line = text.count("\n") + 1
    column = position - (text.rfind("\n") + 1) + 1
    return f"line {line}, column {column} (character {position + 1})"


async def _malformed_json(request: Request, error: dict[str, Any]) -> JSONResponse:
    """400 for a body that is not JSON at all, saying where the parser stopped."""
    loc = list(error.get("loc", ()))
    position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
    reason = str((error.get("ctx") or {}).get("error", "invalid JSON"))
    body = await request.body()
    where = _where_in(body, position) if body else "the start (the body is empty)"
    return problem(
        request,
        400,
        "malformed_json",
        "Malformed JSON",
        f"The body is not valid JSON: {reason} at {where}.",
    )


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        response = JSONResponse(
            jsonable_encoder(exc.to_problem(request.url.path)),
            status_code=exc.status,
            media_type=PROBLEM_JSON,
        )
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(IdempotentReplay)
    async def replay(_request: Request, exc: IdempotentReplay) -> JSONResponse:
        return replay_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type")
        if content_type and not is_json(content_type) and _about_body(exc):
            # The body was not parsed as JSON at all: say so, not what its bytes lack.
            return problem(
                request,
                415,
                "unsupported_media_type",
                "Unsupported media type",
                f"Send the body as application/json, not {content_type}.",
            )
        malformed = _json_error(exc)
        if malformed is not None:
            return await _malformed_json(request, malformed)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"])
        return problem(
            request,
            422,
            "validation_error",
            "Invalid request",
            f"{where}: {first['msg']}" if where else str(first["msg"]),
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
        response = problem(request, exc.status_code, code, title, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed_methods(request.app, request.url.path)
        return response

    @app.exception_handler(DataError)
    async def data_error(request: Request, _exc: DataError) -> JSONResponse:
        # Validation should have refused the value already; the database is the last line.
        log.warning("database refused a value on %s %s", request.method, request.url.path)
        return problem(
            request,
            422,
            "value_out_of_range",
            "Invalid request",
            "A value does not fit what can be stored (too large, too precise or malformed).",
        )

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        # Down, restarting, cut off or out of connections: a retry later may well succeed.
        if not unreachable(exc):
            return internal_error(request)
        log.warning("database unreachable on %s %s: %s", request.method, request.url.path, exc)
        retry_after = str(request.app.state.settings.serving.retry_after_s)
        error = DatabaseUnavailable("The database cannot be reached right now; retry later.")
        response = problem(request, 503, error.code, error.title, error.detail)
        response.headers["Retry-After"] = retry_after
        return response

    for kind in UNREACHABLE:
        app.add_exception_handler(kind, database_error)

    @app.exception_handler(Exception)
    async def unhandled(request: Request, _exc: Exception) -> JSONResponse:
        return internal_error(request)


def internal_error(request: Request) -> JSONResponse:
    """A 500 that says nothing of the failure; the traceback goes to the log."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(
        request,
        500,
        "internal_error",
        "Internal server error",
        "An unexpected error occurred; it has been logged.",
    )
