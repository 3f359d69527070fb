"""The invocation route's hot path, as plain ASGI in front of every other middleware.

``POST /v1/deployments/{id}/invocations`` from a key authenticated within the principal
cache's TTL, to a deployment it was allowed to invoke within ``route_ttl_s``, is answered
here: no route matching, no dependency solving, the body passed to the model as received. Any
other request (a first one, an expired route, a missing or unknown key, a malformed id) goes
on to the middlewares and the FastAPI route, which answer it through the same service and
refresh the cache. So this path can only grant what that route granted a moment ago.

It takes only requests that the checks in front of the route would let through unchanged, and
passes every other one on for them to answer: no query string, no NUL byte in a header (the
path matched ``PATH``, so it has none), and a ``Content-Length`` within the body limit (the
server holds the body to it; a chunked body goes the long way). What those middlewares do
for a request that passes, it does too: it echoes ``X-Request-ID`` and counts the request in
the request metrics, labelled with the route template.
"""

from __future__ import annotations

import json
import re
import time
import uuid

from starlette.types import ASGIApp, Receive, Scope, Send

from app.domain.deployments import invocations
from app.domain.deployments.route_cache import Target
from app.errors import PROBLEM_JSON, AppError, Unauthorized
from app.observability import context
from app.observability.http import REQUEST_ID, record
from app.settings import Settings

PATH = re.compile(r"^/v1/deployments/([0-9a-fA-F-]{32,36})/invocations$")
# What the request metrics label these requests with, as the FastAPI route would be.
ROUTE = "/v1/deployments/{deployment_id}/invocations"
DEFAULT_TYPE = b"application/json"
_PROBLEM = PROBLEM_JSON.encode()


class InvocationFastPath:
    """Serves cached invocations; passes everything else to ``app`` untouched."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.max_bytes = settings.api.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        matched = (
            PATH.match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST" and not scope["query_string"]
            else None
        )
        request = None if matched is None else self._request(scope["headers"], matched.group(1))
        if request is None:
            await self.app(scope, receive, send)
            return
        target, content_type, given_id = request
        rid = context.accept_request_id(given_id)
        token = context.request_id.set(rid)
        status = 500
        try:
            status = await self._answer(scope, receive, send, target, content_type, rid)
        finally:
            record("POST", ROUTE, status, time.perf_counter() - started)
            context.request_id.reset(token)

    def _request(
        self, headers: list[tuple[bytes, bytes]], raw_id: str
    ) -> tuple[Target, bytes, str | None] | None:
        """The route, the content type and the given request id of a request this path may
        answer; None to pass it on."""
        authorization = length = given_id = None
        content_type = DEFAULT_TYPE
        for name, value in headers:
            if b"\x00" in value:
                return None
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif name == REQUEST_ID:
                given_id = value.decode("latin-1")
        if authorization is None or length is None or not length.isdigit():
            return None
        if int(length) > self.max_bytes:
            return None
        target = self._target(authorization, raw_id)
        return None if target is None else (target, content_type, given_id)

    def _target(self, authorization: bytes, raw_id: str) -> Target | None:
        try:
            deployment_id = uuid.UUID(raw_id)
        except ValueError:
            return None
        scheme, _, secret = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        try:
            return invocations.cached_route(self.settings, secret.strip(), deployment_id)
        except Unauthorized:
            return None

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        target: Target,
        content_type: bytes,
        rid: str,
    ) -> int:
        """Send the body to the model and its answer back; the status sent (499: none, the
        client went away)."""
        extra = [(REQUEST_ID, rid.encode())]
        body = await _body(receive)
        if body is None:  # the client went away: nothing to send, nothing to answer
            return 499
        try:
            answer = await invocations.invoke(target, body, content_type.decode("latin-1"))
        except AppError as error:
            problem = json.dumps(error.to_problem(scope["path"])).encode()
            extra += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
            await _reply(send, error.status, problem, _PROBLEM, extra)
            return error.status
        await _reply(send, answer.status_code, answer.body, answer.content_type.encode(), extra)
        return answer.status_code


async def _body(receive: Receive) -> bytes | None:
    message = await receive()
    if message["type"] != "http.request":
        return None
    if not message.get("more_body", False):
        return message.get("body", b"")  # type: ignore[no-any-return]
    chunks: list[bytes] = [message.get("body", b"")]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _reply(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": body})
