"""HTTP for the client: retries with backoff, an Idempotency-Key on every POST, problem+json
answers raised as ``StratusError``."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .errors import StratusError

RETRY_STATUSES = frozenset({429, 503})
Body = bytes | Callable[[], Iterable[bytes]]  # a callable makes a fresh stream per attempt


class Backoff:
    """Exponential delays with jitter, capped; a ``Retry-After`` from the server wins."""

    def __init__(self, retries: int = 6, base_s: float = 0.5, cap_s: float = 30.0) -> None:
        self.retries = retries
        self.base_s = base_s
        self.cap_s = cap_s

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap_s * 4)
        ceiling = min(self.cap_s, self.base_s * float(2**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not secrets


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def error_from(response: httpx.Response) -> StratusError:
    """The problem+json answer as a ``StratusError`` (any other body: its text as detail)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip()[:500] or response.reason_phrase
        return StratusError(response.status_code, f"http_{response.status_code}", text)
    code = str(body.get("code") or f"http_{response.status_code}")
    detail = str(body.get("detail") or body.get("title") or response.reason_phrase)
    return StratusError(response.status_code, code, detail, body)


class HTTP:
    """One connection pool to one Stratus, authenticated with one key."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "stratus-client",
    ) -> None:
        headers = {"User-Agent": user_agent}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.url = url.rstrip("/")
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: Body | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send, retrying connection errors, 429 and 503; raise ``StratusError`` on >= 400."""
        with self._send(
            method, path, json, params, content, headers, idempotency_key, read=True
        ) as response:
            return response

    @contextmanager
    def stream(
        self, method: str, path: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[httpx.Response]:
        """Like ``request``, with the body left unread for ``iter_bytes()``."""
        with self._send(method, path, None, params, None, None, None, read=False) as response:
            yield response

    @contextmanager
    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, Any] | None,
        content: Body | None,
        headers: Mapping[str, str] | None,
        idempotency_key: str | None,
        *,
        read: bool,
    ) -> Iterator[httpx.Response]:
        sent = dict(headers or {})
        if method.upper() == "POST":
            # The same key on every attempt: a retry after a lost answer replays, never repeats.
            sent.setdefault("Idempotency-Key", idempotency_key or f"stratus-{uuid.uuid4()}")
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            body = content() if callable(content) else content
            request = self._http.build_request(
                method, path, json=json, params=clean, content=body, headers=sent
            )
            try:
                response = self._http.send(request, stream=True)
                if read or response.status_code >= 400:
                    try:
                        response.read()
                    finally:
                        response.close()
            except httpx.TransportError as exc:
                if attempt >= self.backoff.retries:
                    raise StratusError(
                        0, "unreachable", f"cannot reach Stratus at {self.url}: {exc!r}"
                    ) from exc
                self.sleep(self.backoff.delay(attempt))
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.backoff.retries:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                response.close()
                self.sleep(self.backoff.delay(attempt, wait))
                attempt += 1
                continue
            try:
                if response.status_code >= 400:
                    raise error_from(response)
                yield response
            finally:
                response.close()
            return
