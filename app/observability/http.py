"""ASGI middleware: a request id for every request (echoed as ``X-Request-ID``) and the
request count and latency by route template and status."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import context, prometheus


def _route_of(scope: Scope) -> str:
    """The route template (never the raw path, which would make a series per id)."""
    path = getattr(scope.get("route"), "path", None)
    if path:
        return str(path)
    if scope.get("root_path") or scope.get("app_root_path"):
        return "<mounted>"
    endpoint = scope.get("endpoint")
    return f"<{getattr(endpoint, '__name__', 'page')}>" if endpoint else "<unmatched>"


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1") or None
        rid = context.accept_request_id(given)
        token = context.request_id.set(rid)
        principal_token = context.principal_id.set(None)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                raw: list[Any] = list(message.get("headers", []))
                raw.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": raw}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            labels = {"method": scope["method"], "route": _route_of(scope), "status": str(status)}
            prometheus.HTTP_REQUESTS.labels(**labels).inc()
            prometheus.HTTP_LATENCY.labels(**labels).observe(time.perf_counter() - started)
            context.request_id.reset(token)
            context.principal_id.reset(principal_token)
