"""Requests to local endpoints: pick a ready replica, forward, retry elsewhere, measure.

Runs in the API process. The replica registry is read from disk (re-read only when the file
changed), so any number of API processes route consistently with the controller. A request
that never reached a model (connection refused or reset, a replica draining or still loading)
is retried on another replica, so scaling in or a crash does not fail it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from app.backends.base import Backend, BackendError, Invocation, ModelError
from app.backends.local import stats
from app.backends.local.files import read_json
from app.backends.local.replica_client import ReplicaPool, Unreached
from app.backends.local.replicas import READY
from app.backends.local.serving import IDLE_S, RETRY_HEADER

UNREACHED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)
REREAD_PAUSE_S = 0.05
# Idle pooled connections are dropped before a replica closes them (serving.IDLE_S), so a
# request is rarely sent on a connection the replica is closing (and is retried when it is).
KEEPALIVE_S = IDLE_S / 2
RECHECK_S = 0.05  # how long a reading of an endpoint's registry is used without a stat()


class Router:
    """Round-robin over an endpoint's ready replicas, from threads (``invoke``) or from an
    event loop (``invoke_async``, on pooled connections and no thread of its own)."""

    def __init__(self, timeout_s: float, max_connections: int = 64) -> None:
        self._timeout = httpx.Timeout(timeout_s, connect=2.0)
        self._limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_S,
        )
        self._client = httpx.Client(timeout=self._timeout, limits=self._limits)
        # One pool per event loop: a connection belongs to the loop that opened it.
        self._async: tuple[asyncio.AbstractEventLoop, ReplicaPool] | None = None
        self._max_connections = max_connections
        self._timeout_s = timeout_s
        self._turn = itertools.count()
        # Registry readings: (mtime, inode, size), when checked, ready ports.
        self._cache: dict[Path, tuple[tuple[int, int, int], float, list[int]]] = {}
        self._lock = threading.Lock()
        self.recorder = stats.Recorder()

    def close(self) -> None:
        """Close pooled connections and write the held request lines."""
        self._client.close()
        self.recorder.flush()

    def ready_ports(self, endpoint_dir: Path, *, fresh: bool = False) -> list[int]:
        """Ports of the ready replicas, from the registry the controller writes."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(endpoint_dir)
        # Within RECHECK_S the last reading stands: a replica drained meanwhile still answers
        # (it lingers) or says "try another", and a retry reads afresh.
        if cached is not None and not fresh and now - cached[1] < RECHECK_S:
            return cached[2]
        path = endpoint_dir / "registry.json"
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return []
        key = (info.st_mtime_ns, info.st_ino, info.st_size)
        if cached is not None and cached[0] == key and not fresh:
            ports = cached[2]
        else:
            entries = (read_json(path) or {}).get("replicas", [])
            ports = [int(e["port"]) for e in entries if e.get("state") == READY]
        with self._lock:
            self._cache[endpoint_dir] = (key, now, ports)
        return ports

    def _order(self, endpoint_dir: Path, attempt: int, tried: set[int]) -> list[int]:
        ports = self.ready_ports(endpoint_dir, fresh=attempt > 0)
        return [p for p in _rotate(ports, next(self._turn)) if p not in tried]

    def invoke(self, name: str, endpoint_dir: Path, body: bytes, content_type: str) -> Invocation:
        """Send one request to a ready replica; ModelError for a 4xx/5xx from the model."""
        began, status = time.perf_counter(), 503
        try:
            tried: set[int] = set()
            for attempt in range(2):
                if attempt:  # the registry may have moved on while we tried: look again
                    time.sleep(REREAD_PAUSE_S)
                for port in self._order(endpoint_dir, attempt, tried):
                    tried.add(port)
                    answer = self._send(port, body, content_type)
                    if answer is not None:
                        status = answer.status_code
                        return _invocation(answer, began)
            raise _no_replica(name, tried)
        except httpx.TimeoutException as exc:
            status = 504
            raise self._timed_out() from exc
        finally:
            self._record(endpoint_dir, began, len(body), status)

    async def invoke_async(
        self, name: str, endpoint_dir: Path, body: bytes, content_type: str
    ) -> Invocation:
        """``invoke`` on the running event loop, over the pool's kept-alive connections."""
        began, status = time.perf_counter(), 503
        try:
            tried: set[int] = set()
            for attempt in range(2):
                if attempt:
                    await asyncio.sleep(REREAD_PAUSE_S)
                for port in self._order(endpoint_dir, attempt, tried):
                    tried.add(port)
                    try:
                        answer = await self._send_async(port, body, content_type)
                    except ModelError as error:
                        status = error.status_code
                        raise
                    if answer is not None:
                        status = 200
                        latency_ms = (time.perf_counter() - began) * 1000
                        return Invocation(answer.body, answer.content_type, latency_ms)
            raise _no_replica(name, tried)
        except TimeoutError as exc:
            status = 504
            raise self._timed_out() from exc
        finally:
            self._record(endpoint_dir, began, len(body), status)

    def _record(self, endpoint_dir: Path, began: float, size: int, status: int) -> None:
        # Stamped when it completes, so a pull of a period that has ended finds it written.
        latency_ms = (time.perf_counter() - began) * 1000
        self.recorder.add(endpoint_dir, time.time(), latency_ms, size, status)

    def _timed_out(self) -> BackendError:
        message = f"the model did not answer within {self._timeout_s:g} s"
        return BackendError(message, retryable=True)

    def _send(self, port: int, body: bytes, content_type: str) -> httpx.Response | None:
        """The replica's answer, or None when the request did not reach its model."""
        url = f"http://127.0.0.1:{port}/invocations"
        try:
            answer = self._client.post(url, content=body, headers=_headers(content_type))
        except UNREACHED:
            return None
        return None if _refused(answer) else answer

    async def _send_async(self, port: int, body: bytes, content_type: str) -> Invocation | None:
        try:
            reply = await self._pool().post(port, "/invocations", body, content_type)
        except Unreached:
            return None
        if reply.status == 503 and reply.headers.get(RETRY_HEADER.lower()):
            return None
        reply_type = reply.headers.get("content-type", "application/json")
        if reply.status >= 400:
            raise ModelError(reply.status, reply.body, reply_type)
        return Invocation(reply.body, reply_type, 0.0)

    def _pool(self) -> ReplicaPool:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            self._async = (loop, ReplicaPool(self._max_connections, self._timeout_s, KEEPALIVE_S))
        return self._async[1]


def _headers(content_type: str) -> dict[str, str]:
    return {"Content-Type": content_type, "Accept": "application/json"}


def _refused(answer: httpx.Response) -> bool:
    """A draining or loading replica's "try another one"."""
    return answer.status_code == 503 and bool(answer.headers.get(RETRY_HEADER))


def _invocation(answer: httpx.Response, began: float) -> Invocation:
    reply_type = answer.headers.get("content-type", "application/json")
    if answer.status_code >= 400:
        raise ModelError(answer.status_code, answer.content, reply_type)
    return Invocation(answer.content, reply_type, (time.perf_counter() - began) * 1000)


def _no_replica(name: str, tried: set[int]) -> BackendError:
    what = "could take the request" if tried else "is ready"
    return BackendError(f"no replica of endpoint {name!r} {what}", retryable=True)


def _rotate(ports: Sequence[int], turn: int) -> list[int]:
    if not ports:
        return []
    start = turn % len(ports)
    return [*ports[start:], *ports[:start]]


def tfserving_predict(backend: Backend, endpoint_name: str, instances: Sequence[Any]) -> list[Any]:
    """TF Serving's REST shape over ``invoke``: ``{"instances": [...]}`` → the predictions."""
    payload = json.dumps({"instances": list(instances)}).encode()
    result = backend.invoke(endpoint_name, payload, "application/json")
    try:
        answer = json.loads(result.body)
    except ValueError as exc:
        raise BackendError("the model did not answer with JSON", retryable=False) from exc
    if isinstance(answer, dict) and "predictions" in answer:
        predictions = answer["predictions"]
        return list(predictions) if isinstance(predictions, list) else [predictions]
    return answer if isinstance(answer, list) else [answer]
