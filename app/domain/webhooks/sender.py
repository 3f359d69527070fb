"""One HTTP attempt at a webhook delivery, with no database transaction open."""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from app.clock import utcnow
from app.domain.webhooks.targets import TargetRefused, TargetUnresolved, check_target

BODY_KEEP_BYTES = 1024
USER_AGENT = "Stratus-Webhooks/1"


@dataclass(frozen=True)
class Request:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: float
    error: str | None = None
    response_body: str | None = None
    retry_after_s: float | None = None
    retryable: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if it has one."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


def send(request: Request, timeout_s: float, allow_private: bool) -> Outcome:
    """POST the delivery: redirects are not followed; only the first 1 KB of the answer is
    kept. Timeouts, connection errors, 429 and 5xx are retryable; other answers are final."""
    started = time.monotonic()

    def elapsed() -> float:
        return round((time.monotonic() - started) * 1000, 1)

    try:
        check_target(request.url, allow_private)
    except TargetUnresolved as exc:
        return Outcome(None, elapsed(), error=str(exc), retryable=True)
    except TargetRefused as exc:
        return Outcome(None, elapsed(), error=f"refused: {exc}")
    headers = {**request.headers, "content-type": "application/json", "user-agent": USER_AGENT}
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=False) as client,
            client.stream("POST", request.url, content=request.body, headers=headers) as answer,
        ):
            kept = b""
            for chunk in answer.iter_bytes():
                kept += chunk[: BODY_KEEP_BYTES - len(kept)]
                if len(kept) >= BODY_KEEP_BYTES:
                    break
    except httpx.TimeoutException:
        return Outcome(None, elapsed(), error=f"timed out after {timeout_s:g} s", retryable=True)
    except httpx.HTTPError as exc:
        return Outcome(None, elapsed(), error=f"{type(exc).__name__}: {exc}"[:500], retryable=True)
    code = answer.status_code
    return Outcome(
        code,
        elapsed(),
        response_body=kept.decode("utf-8", "replace"),
        retry_after_s=_retry_after(answer.headers.get("retry-after")),
        retryable=code == 429 or code >= 500,
    )
