"""The invocation route's hot path, as plain ASGI in front of the router.

``POST /v1/deployments/{id}/invocations`` from a key authenticated within the principal
cache's TTL, to a deployment it was allowed to invoke within ``route_ttl_s``, is answered
here: no route matching, no dependency solving, the body passed to the model as received. Any
other request (a first one, an expired route, a missing or unknown key, a malformed id) goes
on to the FastAPI route, which answers it through the same service and refreshes the cache.
So this path can only grant what that route granted a moment ago.
"""

from __future__ import annotations

import json
import re
import uuid
from types import SimpleNamespace

from starlette.types import ASGIApp, Receive, Scope, Send

from app.domain.deployments import invocations
from app.domain.deployments.route_cache import Target
from app.errors import PROBLEM_JSON, AppError, Unauthorized
from app.settings import Settings

PATH = re.compile(r"^/v1/deployments/([0-9a-fA-F-]{32,36})/invocations$")
# What the request metrics label these requests with, as the FastAPI route would be.
ROUTE = SimpleNamespace(path="/v1/deployments/{deployment_id}/invocations")
DEFAULT_TYPE = b"application/json"


class InvocationFastPath:
    """Serves cached invocations; passes everything else to ``app`` untouched."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = (
            PATH.match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        headers: dict[bytes, bytes] = {} if matched is None else dict(scope["headers"])
        target = None if matched is None else self._target(headers, matched.group(1))
        if target is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = ROUTE
        content_type = headers.get(b"content-type", DEFAULT_TYPE).decode("latin-1")
        body = await _body(receive)
        if body is None:  # the client went away: nothing to send, nothing to answer
            return
        try:
            answer = await invocations.invoke(target, body, content_type)
        except AppError as error:
            problem = json.dumps(error.to_problem(scope["path"])).encode()
            extra = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
            await _reply(send, error.status, problem, PROBLEM_JSON.encode(), extra)
            return
        await _reply(send, answer.status_code, answer.body, answer.content_type.encode())

    def _target(self, headers: dict[bytes, bytes], raw_id: str) -> Target | None:
        try:
            deployment_id = uuid.UUID(raw_id)
        except ValueError:
            return None
        authorization = headers.get(b"authorization")
        if authorization is None:
            return None
        scheme, _, secret = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        try:
            return invocations.cached_route(self.settings, secret.strip(), deployment_id)
        except Unauthorized:
            return None


async def _body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _reply(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
