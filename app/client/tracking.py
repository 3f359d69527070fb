"""Tracking from inside training code, MLflow-style: a run with backend ``external`` whose
metrics the client buffers and sends in batches from a background thread.

Each batch gets a ``batch_id`` when it is cut and keeps it until the server has stored it, so
a batch resent after a lost answer is stored once.
"""

from __future__ import annotations

import atexit
import logging
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import StratusError
from .models import Run

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("stratus.tracking")

METRIC_NAME = re.compile(r"^[A-Za-z0-9_.\-/:]{1,128}$")
MAX_BATCH = 10_000  # the API's cap per ingest request
MAX_FINAL_METRICS = 100
Param = str | int | float | bool


class TrackedRun:
    """A run your own code reports into. Use it as a context manager: leaving the block
    flushes the metrics and completes the run, or fails it with the exception's text."""

    def __init__(
        self,
        client: Client,
        run: Run,
        *,
        flush_interval_s: float = 1.0,
        close_timeout_s: float = 60.0,
    ) -> None:
        self.client = client
        self.run = run
        self.id = run.id
        self.flush_interval_s = min(flush_interval_s, 1.0)
        self.close_timeout_s = close_timeout_s
        self._token = secrets.token_hex(4)
        self._seq = 0
        self._buffer: deque[dict[str, Any]] = deque()
        self._pending: tuple[str, list[dict[str, Any]]] | None = None  # cut, not yet stored
        self._latest: dict[str, float] = {}
        self._lock = threading.Condition()
        self._stopping = False
        self._sent = 0
        self._flush_target = 0  # batches a flush() waits for; the thread hurries until then
        self.dropped: list[StratusError] = []
        self._thread = threading.Thread(target=self._flusher, name="stratus-metrics", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # --- logging -----------------------------------------------------------------------------

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Buffer one point; it reaches the server within about a second."""
        self.log_metrics({name: value}, step=step)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Buffer one point per metric, all at the same step and time."""
        now = datetime.now(UTC).isoformat()
        points = []
        for name, value in metrics.items():
            if not METRIC_NAME.match(name):
                raise ValueError(f"metric name {name!r} must match {METRIC_NAME.pattern}")
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"metric {name!r} must be a finite number, not {value!r}")
            if step is not None and step < 0:
                raise ValueError("step must be >= 0")
            point: dict[str, Any] = {"name": name, "value": number, "timestamp": now}
            if step is not None:
                point["step"] = int(step)
            points.append(point)
        with self._lock:
            if self._stopping:
                raise RuntimeError("this run has ended; start another to log more")
            self._buffer.extend(points)
            for point in points:
                self._latest[point["name"]] = point["value"]
            if len(self._buffer) >= MAX_BATCH:
                self._lock.notify_all()

    def log_params(self, params: Mapping[str, Param]) -> None:
        """Merge parameters into the run's hyperparameters (sent at once)."""
        self.run = self.client.runs.log_params(self.id, dict(params))

    # --- flushing ----------------------------------------------------------------------------

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every point logged so far is stored (``TimeoutError`` after timeout)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            target = self._seq + math.ceil(len(self._buffer) / MAX_BATCH)
            self._flush_target = max(self._flush_target, target)
            self._lock.notify_all()
            while self._stored_through() < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"metrics of run {self.id} not stored in {timeout_s} s")
                if not self._thread.is_alive():
                    raise RuntimeError("the metrics thread has stopped")
                self._lock.wait(0.1 if left is None else min(left, 0.1))

    def _stored_through(self) -> int:
        """How many batches are cut and stored (a cut batch still pending does not count)."""
        return self._seq - (1 if self._pending is not None else 0)

    def _hurry(self) -> bool:
        return (
            self._pending is not None
            or self._stopping
            or len(self._buffer) >= MAX_BATCH
            or self._stored_through() < self._flush_target
        )

    def _cut(self) -> tuple[str, list[dict[str, Any]]] | None:
        """The batch to send next (the pending one first); called with the lock held."""
        if self._pending is None and self._buffer:
            count = min(len(self._buffer), MAX_BATCH)
            points = [self._buffer.popleft() for _ in range(count)]
            self._seq += 1
            self._pending = (f"{self._token}-{self._seq:08d}", points)
        return self._pending

    def _flusher(self) -> None:
        while True:
            with self._lock:
                if not self._hurry():
                    # At most one batch a second while logging goes on; woken early by a
                    # full buffer, flush() or the end of the run.
                    self._lock.wait(self.flush_interval_s)
                if self._stopping and not self._buffer and self._pending is None:
                    return
                batch = self._cut()
            if batch is None:
                continue
            batch_id, points = batch
            try:
                self.client.runs.ingest_metrics(self.id, points, batch_id=batch_id)
            except StratusError as error:
                if error.status == 0 or error.status >= 500 or error.status == 429:
                    log.warning("metrics of run %s not sent yet (%s); retrying", self.id, error)
                    time.sleep(self.flush_interval_s)
                    continue  # the same batch, with the same batch_id, goes again
                log.error("metrics batch %s of run %s refused: %s", batch_id, self.id, error)
                self.dropped.append(error)
            with self._lock:
                if self._pending is batch:
                    self._pending = None
                    self._sent += len(points)
                self._lock.notify_all()

    # --- ending ------------------------------------------------------------------------------

    def _stop_flusher(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._thread.join(self.close_timeout_s)
        atexit.unregister(self._at_exit)
        if self._thread.is_alive():
            raise StratusError(
                0, "unreachable", f"metrics of run {self.id} could not all be sent in time"
            )

    def end(self, error: BaseException | None = None) -> Run:
        """Flush, then complete the run (with each metric's last value), or fail it."""
        self._stop_flusher()
        if error is None:
            final = dict(list(self._latest.items())[-MAX_FINAL_METRICS:])
            self.run = self.client.runs.complete(self.id, final)
        else:
            reason = f"{type(error).__name__}: {error}".strip()[:4000]
            self.run = self.client.runs.fail(self.id, reason)
        return self.run

    def _at_exit(self) -> None:
        # The interpreter is leaving without the block having ended: send what is buffered.
        try:
            if not self._stopping:
                self.end()
        except Exception:  # noqa: BLE001 - nothing to raise to at exit
            log.exception("ending run %s at exit failed", self.id)

    @property
    def points_sent(self) -> int:
        return self._sent

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, KeyboardInterrupt):
            self._stop_flusher()
            self.run = self.client.runs.stop(self.id)
            return
        self.end(exc)
