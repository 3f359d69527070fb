"""One thin JSON-over-HTTPS client per cloud: a token on every request, a shared request budget,
retries of throttling and transient failures (``Retry-After`` wins), errors as BackendError.

The cloud's own error body is reduced to one line by the ``describe`` function each backend
passes, so callers read "QUOTA_EXCEEDED: ..." rather than a JSON dump.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from app.backends.base import BackendError, ModelError
from app.backends.ratelimit import TokenBucket

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A POST that failed on the way back may have been done; only these say it was not.
UNDONE_STATUSES = frozenset({429, 503})
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "PATCH"})
RATE_WAIT_S = 30.0
MAX_WAIT_S = 60.0


class TokenProvider(Protocol):
    """A bearer token for the cloud's API, fresh enough for the next request."""

    def token(self) -> str: ...


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def error_text(response: httpx.Response) -> str:
    """The cloud's error in one line: ``code: message`` from the usual JSON shapes."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):  # Google {"error": {"status", "message"}}, Azure {"code"...}
        code = error.get("status") or error.get("code") or response.status_code
        return f"{code}: {error.get('message', '')}"[:300]
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):  # IBM
        return f"{errors[0].get('code', response.status_code)}: {errors[0].get('message', '')}"
    return str(body)[:300]


@dataclass(frozen=True)
class Answer:
    """A successful answer: its status, headers and JSON body (empty when there was none)."""

    status: int
    headers: Mapping[str, str]
    body: dict[str, Any]


class CloudHttp:
    """Requests to one cloud API with pacing, retries and error mapping."""

    def __init__(
        self,
        cloud: str,
        base_url: str,
        tokens: TokenProvider,
        limiter: TokenBucket,
        *,
        timeout_s: float = 30.0,
        max_attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.cloud = cloud
        self.tokens = tokens
        self.limiter = limiter
        self.max_attempts = max_attempts
        self._sleep = sleep
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport
        )

    def call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        tolerate: frozenset[int] = frozenset(),
        headers: Mapping[str, str] | None = None,
    ) -> Answer | None:
        """One API call; None when it answered a status in ``tolerate`` (404, 409)."""
        response = self._send(method, url, json=json, params=params, headers=headers)
        if response.status_code in tolerate:
            return None
        if response.status_code >= 400:
            retryable = response.status_code in RETRY_STATUSES
            message = f"{self.cloud} {method} {response.status_code}: {error_text(response)}"
            raise BackendError(message, retryable=retryable)
        body = response.json() if response.content.strip() else {}
        return Answer(
            response.status_code, response.headers, body if isinstance(body, dict) else {}
        )

    def must(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """The JSON body of a call that has no tolerated outcome."""
        answer = self.call(method, url, **kwargs)
        assert answer is not None  # noqa: S101 - nothing tolerated, so an answer or a raise
        return answer.body

    def invoke(
        self, url: str, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> tuple[bytes, str]:
        """A model request (not paced: it is data plane); the model's 4xx/5xx pass through."""
        try:
            response = self.client.post(
                url,
                content=body,
                headers={"Content-Type": content_type, **self._auth(), **(headers or {})},
            )
        except httpx.HTTPError as exc:
            raise BackendError(
                f"{self.cloud}: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        answer_type = response.headers.get("content-type", "application/octet-stream")
        if response.status_code >= 400:
            raise ModelError(response.status_code, response.content, answer_type)
        return response.content, answer_type

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.token()}"}

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        extra = kwargs.pop("headers", None) or {}
        safe = method in IDEMPOTENT
        again = RETRY_STATUSES if safe else UNDONE_STATUSES
        for attempt in range(1, self.max_attempts + 1):
            self.limiter.acquire(RATE_WAIT_S)
            try:
                response = self.client.request(
                    method, url, headers={**self._auth(), **extra}, **kwargs
                )
            except httpx.TimeoutException as exc:
                failure: BackendError | None = BackendError(
                    f"{self.cloud} {method}: timed out ({exc})", retryable=True
                )
                wait = None
            except httpx.HTTPError as exc:
                failure = BackendError(f"{self.cloud} {method}: {exc}", retryable=True)
                wait = None
            else:
                if response.status_code not in again or attempt == self.max_attempts:
                    return response
                failure, wait = None, retry_after_s(response.headers.get("Retry-After"))
            if failure is not None and (attempt == self.max_attempts or not safe):
                raise failure
            self._sleep(self._delay(attempt, wait))
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _delay(attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_WAIT_S)
        ceiling = min(20.0, 0.5 * float(2**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not secrets

    def close(self) -> None:
        self.client.close()
