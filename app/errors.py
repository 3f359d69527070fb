"""Domain errors rendered as RFC 9457 ``application/problem+json``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    """A domain error with an HTTP status, a stable machine code and a human title."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        after_rollback: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        # Called with a new session once the refused request's transaction rolled back: for
        # what must be recorded about a refusal itself (an event), in its own transaction.
        self.after_rollback = after_rollback
        self.detail = detail or self.title
        if code:
            self.code = code
        self.extra = extra or {}
        self.headers = headers or {}

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """The problem+json body."""
        body: dict[str, Any] = {
            "type": f"https://stratus.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class BadRequest(AppError):
    status, code, title = 400, "bad_request", "Bad request"


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="stratus"'})
        super().__init__(detail, **kwargs)


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class Unprocessable(AppError):
    status, code, title = 422, "unprocessable", "Unprocessable request"


class TooManyRequests(AppError):
    status, code, title = 429, "rate_limited", "Too many requests"


class BadGateway(AppError):
    status, code, title = 502, "backend_error", "The compute backend returned an error"


class ServiceUnavailable(AppError):
    status, code, title = 503, "unavailable", "Service unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    code, title = "database_unavailable", "The database is unavailable"


def problem_schema() -> dict[str, Any]:
    """OpenAPI schema for a problem+json response."""
    return {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "instance": {"type": "string"},
        },
        "required": ["type", "title", "status", "code"],
    }


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for routes, declaring their problem+json errors."""
    names = {
        400: "Bad request: e.g. an invalid cursor, an undecodable body, or a NUL character",
        401: "Missing or invalid API key",
        403: "The key's role does not allow this",
        404: "Not found, or not visible to this key",
        409: "Conflicts with the current state",
        413: "Request body too large",
        415: "Unsupported Content-Type",
        422: "Invalid input",
        429: "Rate limited",
        502: "The compute backend or the model returned an error",
        503: "The compute backend is unavailable; retry later",
    }
    return {
        s: {
            "description": names.get(s, "Error"),
            "content": {PROBLEM_JSON: {"schema": problem_schema()}},
        }
        for s in statuses
    }
