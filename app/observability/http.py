"""ASGI middleware: a request id for every request (echoed as ``X-Request-ID``) and the
request count and latency by route template and status.

``record`` is what counts a request; the invocation fast path, which answers in front of
this middleware, counts its requests through it too. Each (method, route, status) series is
looked up once per process and kept, so counting a request is two writes to the metric
values, not a label lookup under the registry's lock.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import context, prometheus

REQUEST_ID = b"x-request-id"
_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def record(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency."""
    series = _series.get((method, route, status))
    if series is None:
        labels = {"method": method, "route": route, "status": str(status)}
        series = (
            prometheus.HTTP_REQUESTS.labels(**labels),
            prometheus.HTTP_LATENCY.labels(**labels),
        )
        if len(_series) < 4096:  # route templates, not raw paths: a small, bounded set
            _series[(method, route, status)] = series
    series[0].inc()
    series[1].observe(seconds)


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
        given = headers.get(REQUEST_ID, b"").decode("latin-1") or None
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
                raw.append((REQUEST_ID, rid.encode()))
                message = {**message, "headers": raw}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            record(scope["method"], _route_of(scope), status, time.perf_counter() - started)
            context.request_id.reset(token)
            context.principal_id.reset(principal_token)
