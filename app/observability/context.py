"""Who and what a log line is about: the request id and the calling key, per request."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("stratus_request_id", default=None)
principal_id: ContextVar[str | None] = ContextVar("stratus_principal_id", default=None)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def accept_request_id(given: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is a plain token, else a new one."""
    if given and _SAFE_ID.match(given):
        return given
    return uuid.uuid4().hex


def set_principal(value: uuid.UUID) -> None:
    principal_id.set(str(value))
