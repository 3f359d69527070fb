"""Request checks that apply to every route before it parses anything.

- ``RejectUnstorableText``: a NUL byte in the path, the query string or a header value answers
  400. Such text cannot be stored in a PostgreSQL text column, and no route has a use for it, so
  it is refused once here rather than in each route. (JSON bodies are checked by
  ``WriteModel``.)
- ``is_json``: a body that fails validation and was sent as another content type than JSON is a
  415, not a 422 (the handlers ask it).
"""

from __future__ import annotations

import email.message
import json
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import PROBLEM_JSON, BadRequest


def _unstorable(scope: Scope) -> str | None:
    """Where the request carries a NUL byte, or None."""
    if "\x00" in scope.get("path", ""):
        return "the path"
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        # %00 is the common spelling; decoding catches the rest (e.g. %2500 stays literal).
        if b"\x00" in unquote_to_bytes(query.replace(b"+", b" ")):
            return "the query string"
    for name, value in scope.get("headers", []):
        if b"\x00" in value:
            return f"the {name.decode('latin-1')} header"
    return None


class RejectUnstorableText:
    """Answers 400 problem+json to a request with a NUL byte in its path, query or headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        where = _unstorable(scope) if scope["type"] == "http" else None
        if where is None:
            await self.app(scope, receive, send)
            return
        error = BadRequest(f"NUL characters are not allowed in {where}.", code="nul_character")
        body = json.dumps(error.to_problem(scope.get("path", "").replace("\x00", ""))).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def is_json(content_type: str) -> bool:
    """Whether ``content_type`` is application/json or an ``application/*+json`` type."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )
