"""Endpoint request statistics: one line per request, summed into periods on demand.

The router records ``timestamp latency_ms bytes_in status`` for each request; a ``Recorder``
keeps them in memory and appends them in batches (every ``FLUSH_S``) to an hourly file under
``stats/``; the controller appends the ready-replica count to ``capacity.jsonl`` each
time it changes. ``aggregate`` turns both into the backend-neutral ENDPOINT_METRICS.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from app.backends.base import MetricSample
from app.backends.local.files import append_lines

STATS_DIR = "stats"
RETENTION_S = 48 * 3600
FLUSH_S = 0.25  # how late a request's line may reach its file (metric pulls wait longer)


def _hour_file(endpoint_dir: Path, hour: int) -> Path:
    stamp = datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y%m%d%H")
    return endpoint_dir / STATS_DIR / f"{stamp}.log"


def record(endpoint_dir: Path, at: float, latency_ms: float, bytes_in: int, status: int) -> None:
    """Append one request's numbers now (any process may call this concurrently)."""
    _append(_hour_file(endpoint_dir, int(at // 3600)), [_line(at, latency_ms, bytes_in, status)])


def _line(at: float, latency_ms: float, bytes_in: int, status: int) -> str:
    return f"{at:.6f} {latency_ms:.3f} {bytes_in} {status}"


def _append(path: Path, lines: list[str]) -> None:
    try:
        append_lines(path, lines)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        append_lines(path, lines)


class Recorder:
    """Request lines held in memory and written in one append per file every ``flush_s``, so a
    busy endpoint costs its API process a write a quarter second, not one per request."""

    def __init__(self, flush_s: float = FLUSH_S) -> None:
        self.flush_s = flush_s
        self._lock = threading.Lock()
        self._pending: dict[tuple[Path, int], list[str]] = {}  # (endpoint dir, hour): lines
        self._thread: threading.Thread | None = None

    def add(
        self, endpoint_dir: Path, at: float, latency_ms: float, bytes_in: int, status: int
    ) -> None:
        """Hold one request's line for the next flush."""
        line = _line(at, latency_ms, bytes_in, status)
        with self._lock:
            self._pending.setdefault((endpoint_dir, int(at // 3600)), []).append(line)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stats-flush", daemon=True)
                self._thread.start()
                atexit.register(self.flush)

    def flush(self) -> None:
        """Write every held line (losing some must not stop the others, nor a request)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for (endpoint_dir, hour), lines in pending.items():
            with contextlib.suppress(OSError):
                _append(_hour_file(endpoint_dir, hour), lines)

    def _run(self) -> None:
        while True:
            time.sleep(self.flush_s)
            self.flush()


def prune_stats(endpoint_dir: Path, keep_s: float = RETENTION_S) -> None:
    """Delete hourly files older than ``keep_s``."""
    oldest = _hour_file(endpoint_dir, int((time.time() - keep_s) // 3600)).name
    for path in (endpoint_dir / STATS_DIR).glob("*.log"):
        if path.name < oldest:
            path.unlink(missing_ok=True)


def _capacity(endpoint_dir: Path) -> list[tuple[float, int]]:
    changes: list[tuple[float, int]] = []
    try:
        lines = (endpoint_dir / "capacity.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return changes
    for line in lines:
        try:
            item = json.loads(line)
            changes.append((float(item["t"]), int(item["ready"])))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(changes)


def _mean_capacity(changes: list[tuple[float, int]], start: float, end: float) -> float:
    """Time-weighted mean of the ready count over [start, end) (a step function)."""
    total, current, at = 0.0, 0, start
    for t, ready in changes:
        if t <= start:
            current = ready
            continue
        if t >= end:
            break
        total += current * (t - at)
        current, at = ready, t
    total += current * (end - at)
    return total / (end - start)


def p95(values: list[float]) -> float:
    """The 95th percentile, nearest-rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def aggregate(
    endpoint_dir: Path, start: datetime, end: datetime, period_s: int
) -> list[MetricSample]:
    """ENDPOINT_METRICS for each whole period from ``start`` that ends by ``end``."""
    # Latency is over the requests answered 2xx (a fast refusal is not a fast answer), while
    # ``invocations`` counts every request. A period without requests reports no latency.
    t0, t1 = start.timestamp(), end.timestamp()
    count = int((t1 - t0) // period_s) if period_s > 0 else 0
    if count <= 0:
        return []
    stop = t0 + count * period_s
    latencies: list[list[float]] = [[] for _ in range(count)]
    totals = [[0, 0, 0, 0] for _ in range(count)]  # requests, 4xx, 5xx, bytes
    for hour in range(int(t0 // 3600), int((stop - 1e-9) // 3600) + 1):
        try:
            lines = _hour_file(endpoint_dir, hour).read_text().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                at_s, latency_s, bytes_s, status_s = line.split()
                at, status = float(at_s), int(status_s)
            except ValueError:
                continue
            if not t0 <= at < stop:
                continue
            index = int((at - t0) // period_s)
            bucket = totals[index]
            bucket[0] += 1
            bucket[1] += 400 <= status < 500
            bucket[2] += status >= 500
            bucket[3] += int(bytes_s)
            if 200 <= status < 300:
                latencies[index].append(float(latency_s))
    changes = _capacity(endpoint_dir)
    samples: list[MetricSample] = []
    for index in range(count):
        begin = t0 + index * period_s
        stamp = datetime.fromtimestamp(begin + period_s, UTC)
        requests, e4, e5, nbytes = totals[index]
        instances = _mean_capacity(changes, begin, begin + period_s)
        values = {
            "invocations": float(requests),
            "invocations_per_instance": requests / instances if instances > 0 else float(requests),
            "errors_4xx": float(e4),
            "errors_5xx": float(e5),
            "bytes_in": float(nbytes),
            "instances": instances,
        }
        if latencies[index]:
            values["latency_mean_ms"] = sum(latencies[index]) / len(latencies[index])
            values["latency_p95_ms"] = p95(latencies[index])
        samples.extend(MetricSample(name, stamp, value) for name, value in values.items())
    return samples
