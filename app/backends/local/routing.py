"""Requests to local endpoints: pick a ready replica, forward, retry elsewhere, measure.

Runs in the API process. The replica registry is read from disk (re-read only when the file
changed), so any number of API processes route consistently with the controller. A request
that never reached a model (connection refused or reset, a replica draining or still loading)
is retried on another replica, so scaling in or a crash does not fail it.
"""

from __future__ import annotations

import contextlib
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
from app.backends.local.replicas import READY
from app.backends.local.serving import RETRY_HEADER

UNREACHED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)
REREAD_PAUSE_S = 0.05


class Router:
    """Round-robin over an endpoint's ready replicas."""

    def __init__(self, timeout_s: float) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=2.0))
        self._timeout_s = timeout_s
        self._turn = itertools.count()
        self._cache: dict[Path, tuple[tuple[int, int, int], list[int]]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close pooled connections."""
        self._client.close()

    def ready_ports(self, endpoint_dir: Path, *, fresh: bool = False) -> list[int]:
        """Ports of the ready replicas, from the registry the controller writes."""
        path = endpoint_dir / "registry.json"
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return []
        key = (info.st_mtime_ns, info.st_ino, info.st_size)
        with self._lock:
            cached = self._cache.get(endpoint_dir)
        if cached is not None and cached[0] == key and not fresh:
            return cached[1]
        entries = (read_json(path) or {}).get("replicas", [])
        ports = [int(e["port"]) for e in entries if e.get("state") == READY]
        with self._lock:
            self._cache[endpoint_dir] = (key, ports)
        return ports

    def invoke(self, name: str, endpoint_dir: Path, body: bytes, content_type: str) -> Invocation:
        """Send one request to a ready replica; ModelError for a 4xx/5xx from the model."""
        began = time.perf_counter()
        status = 503
        try:
            tried: set[int] = set()
            for attempt in range(2):
                if attempt:  # the registry may have moved on while we tried: look again
                    time.sleep(REREAD_PAUSE_S)
                ports = self.ready_ports(endpoint_dir, fresh=attempt > 0)
                ports = [p for p in _rotate(ports, next(self._turn)) if p not in tried]
                for port in ports:
                    tried.add(port)
                    answer = self._send(port, body, content_type)
                    if answer is None:
                        continue
                    status = answer.status_code
                    reply_type = answer.headers.get("content-type", "application/json")
                    if status >= 400:
                        raise ModelError(status, answer.content, reply_type)
                    latency_ms = (time.perf_counter() - began) * 1000
                    return Invocation(answer.content, reply_type, latency_ms)
            what = "could take the request" if tried else "is ready"
            raise BackendError(f"no replica of endpoint {name!r} {what}", retryable=True)
        except httpx.TimeoutException as exc:
            status = 504
            message = f"the model did not answer within {self._timeout_s:g} s"
            raise BackendError(message, retryable=True) from exc
        finally:
            latency_ms = (time.perf_counter() - began) * 1000
            # Stamped when it completes, so a pull of a period that has ended finds it written.
            with contextlib.suppress(OSError):  # losing one sample must not fail the request
                stats.record(endpoint_dir, time.time(), latency_ms, len(body), status)

    def _send(self, port: int, body: bytes, content_type: str) -> httpx.Response | None:
        """The replica's answer, or None when the request did not reach its model."""
        url = f"http://127.0.0.1:{port}/invocations"
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        try:
            answer = self._client.post(url, content=body, headers=headers)
        except UNREACHED:
            return None
        if answer.status_code == 503 and answer.headers.get(RETRY_HEADER):
            return None
        return answer


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
