"""The hidden services of the autoscaling benchmark: queues whose parameters no policy reads.

``Service(pooled=False)``: every instance is its own M/M/k queue (k workers, exponential service)
behind a random load balancer, plus a fixed overhead. ``pooled=True``: one M/M/(k·n) queue over
all n instances (a shared work queue), where high per-instance load is safe at scale. p95 and mean
latency are tabulated once over utilisation (and, pooled, over n) and interpolated, vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
RHO = np.linspace(0.0, 0.995, 400)
TIMEOUT_MS = 30_000.0


def _erlang_c(servers: npt.NDArray[np.int64], rho: FloatArray) -> FloatArray:
    """P(wait) of M/M/c for each (c, ρ): Erlang B by its recursion, then C from B."""
    a = rho[None, :] * servers[:, None]
    b = np.ones_like(a)
    out = np.zeros_like(a)
    for k in range(1, int(servers.max()) + 1):
        b = a * b / (k + a * b)
        out = np.where((servers == k)[:, None], b, out)
    return np.asarray(out / (1.0 - rho[None, :] * (1.0 - out)), dtype=np.float64)


def _sojourn(servers: npt.NDArray[np.int64], mu: float) -> tuple[FloatArray, FloatArray]:
    """(p95, mean) of the time in an M/M/c system, in ms, for each (c, ρ) of the grid."""
    c = servers[:, None].astype(np.float64)
    pw = _erlang_c(servers, RHO)
    theta = c * mu * (1.0 - RHO[None, :])  # decay rate of the waiting time

    def survival(t: FloatArray) -> FloatArray:
        close = np.abs(theta - mu) < 1e-9
        both = np.where(
            close,
            np.exp(-mu * t) * (1 + mu * t),
            (theta * np.exp(-mu * t) - mu * np.exp(-theta * t)) / np.where(close, 1.0, theta - mu),
        )
        return np.asarray((1 - pw) * np.exp(-mu * t) + pw * both, dtype=np.float64)

    lo, hi = np.zeros_like(pw), np.full_like(pw, 1e4)
    for _ in range(60):  # bisection on every cell at once
        mid = (lo + hi) / 2
        above = survival(mid) > 0.05
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    mean = pw / theta + 1.0 / mu
    return 1000.0 * (lo + hi) / 2, 1000.0 * mean


@dataclass(frozen=True)
class Service:
    """An endpoint's latency as a function of offered load and instances in service."""

    name: str = "lb"
    workers: int = 4
    service_ms: float = 50.0
    overhead_ms: float = 30.0
    pooled: bool = False
    max_instances: int = 100
    p95: FloatArray = field(init=False, repr=False)
    mean: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        counts = np.arange(1, (self.max_instances if self.pooled else 1) + 1)
        servers = (counts * self.workers).astype(np.int64)
        p95, mean = _sojourn(servers, 1000.0 / self.service_ms)
        object.__setattr__(self, "p95", p95 + self.overhead_ms)
        object.__setattr__(self, "mean", mean + self.overhead_ms)

    @property
    def capacity_rps(self) -> float:
        """Requests/s one instance completes at full utilisation."""
        return self.workers * 1000.0 / self.service_ms

    def latency(self, load: FloatArray, n: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(p95 ms, mean ms, failed fraction) at each (offered load, instances in service)."""
        n = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
        rho = np.asarray(load, dtype=np.float64) / (n * self.capacity_rps)
        row = (np.minimum(n, self.max_instances) - 1).astype(np.intp) if self.pooled else 0
        pos = np.clip(rho / RHO[-1] * (RHO.size - 1), 0.0, RHO.size - 1.000001)
        i = pos.astype(np.intp)
        w = pos - i
        p95 = self.p95[row, i] * (1 - w) + self.p95[row, i + 1] * w
        mean = self.mean[row, i] * (1 - w) + self.mean[row, i + 1] * w
        over = rho >= RHO[-1]
        failed = np.where(over, np.maximum(0.0, 1.0 - RHO[-1] / np.maximum(rho, 1e-9)), 0.0)
        return np.where(over, TIMEOUT_MS, p95), np.where(over, TIMEOUT_MS, mean), failed

    def load_test(self, slo_ms: float) -> float:
        """Highest requests/s one instance alone sustains with its steady p95 under the SLO."""
        ok = self.p95[0] <= slo_ms
        return float(RHO[ok].max() * self.capacity_rps)


SERVICES = (
    Service("lb"),
    Service("pooled", pooled=True),
    Service("lb-overhead", workers=8, service_ms=50.0, overhead_ms=100.0),
)
