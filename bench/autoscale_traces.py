"""Load shapes of the autoscaling benchmark, one value per minute, in units of a base level.

Every shape takes a generator and a length in minutes and returns history and evaluation in one
array; the benchmark scores only the last ``eval`` minutes and hands the minutes before to the
optimizer as the deployment's metric history (as if it had run under target tracking).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Shape = Callable[[np.random.Generator, int], FloatArray]


def _noise(rng: np.random.Generator, n: int, sd: float = 0.05) -> FloatArray:
    return np.asarray(np.exp(rng.normal(0.0, sd, n)), dtype=np.float64)


def diurnal(rng: np.random.Generator, n: int) -> FloatArray:
    """Days of a smooth daily cycle (8× from night to noon), each day's height ±10 %."""
    m = np.arange(n)
    heights = rng.uniform(0.9, 1.1, n // 1440 + 2)[m // 1440]
    day = (0.5 - 0.5 * np.cos(2 * np.pi * (m - 240) / 1440)) ** 1.5
    return (0.3 + 2.2 * day * heights) * _noise(rng, n, 0.04)


def batch(period: int, width: int, factor: float, jitter: int = 0) -> Shape:
    """A burst of ``factor``× every ``period`` minutes for ``width`` minutes (cron batch jobs)."""

    def shape(rng: np.random.Generator, n: int) -> FloatArray:
        load = np.ones(n)
        for start in range(0, n, period):
            at = start + int(rng.integers(-jitter, jitter + 1)) if jitter else start
            load[max(at, 0) : max(at + width, 0)] = factor * rng.uniform(0.85, 1.15)
        return load * _noise(rng, n)

    return shape


def flash_crowd(rng: np.random.Generator, n: int) -> FloatArray:
    """Flat, until a crowd arrives late in the trace: 5× within minutes, decaying over an hour."""
    m = np.arange(n, dtype=np.float64)
    at = n - int(rng.integers(300, 400))
    since = m - at
    crowd = np.where(since >= 0, 4.0 * np.minimum(since / 3.0, 1.0) * np.exp(-since / 60.0), 0.0)
    return (1.0 + crowd) * _noise(rng, n)


def random_walk(rng: np.random.Generator, n: int) -> FloatArray:
    """A drift-free random walk of the level with 15 % bucket noise."""
    level = np.cumsum(rng.normal(0, 0.02, n))
    level -= np.linspace(0, level[-1], n)
    return np.asarray(1.5 * np.exp(level), dtype=np.float64) * _noise(rng, n, 0.15)


def heavy_tailed(rng: np.random.Generator, n: int) -> FloatArray:
    """Bursts at random times (every 40 min on average), Pareto heights (α 1.5), 3–10 min long."""
    load = np.ones(n)
    t = 0
    while True:
        t += int(rng.exponential(40.0)) + 1
        if t >= n:
            break
        load[t : t + int(rng.integers(3, 11))] += min(float(rng.pareto(1.5)) + 0.2, 6.0)
    return load * _noise(rng, n)


def growth(rng: np.random.Generator, n: int) -> FloatArray:
    """Steady exponential growth: 3× over the last eight hours, noise on top."""
    m = np.arange(n, dtype=np.float64)
    return np.asarray(np.exp(np.log(3.0) * (m - n + 480) / 480), dtype=np.float64) * _noise(rng, n)


def steps(rng: np.random.Generator, n: int) -> FloatArray:
    """Levels that jump 2–3× up or down at random times, an hour or two apart."""
    load = np.empty(n)
    level, t = 1.0, 0
    while t < n:
        span = int(rng.integers(60, 150))
        load[t : t + span] = level
        level = float(np.clip(level * rng.choice([0.4, 2.5]), 0.5, 3.5))
        t += span
    return load * _noise(rng, n)


@dataclass(frozen=True)
class Family:
    """A trace shape and how the benchmark runs it."""

    name: str
    shape: Shape
    periodic: bool
    history: int  # minutes of metric history before the scored part
    minutes: int  # minutes scored


FAMILIES = (
    Family("diurnal-3d", diurnal, True, 3 * 1440, 1440),
    Family("batch-60m", batch(60, 10, 4.0), True, 1440, 480),
    Family("batch-30m", batch(30, 5, 3.0), True, 1440, 480),
    Family("batch-120m", batch(120, 15, 5.0, jitter=1), True, 1440, 480),
    Family("spike-45m", batch(45, 3, 3.0), True, 1440, 480),
    Family("flash", flash_crowd, False, 1440, 480),
    Family("walk", random_walk, False, 1440, 480),
    Family("heavy-tail", heavy_tailed, False, 1440, 480),
    Family("growth", growth, False, 1440, 480),
    Family("steps", steps, False, 1440, 480),
)


def original(rng: np.random.Generator) -> dict[str, FloatArray]:
    """The four original traces, in requests/s per minute: diurnal, step, spike, noisy."""
    day = np.arange(1440)
    diurnal = 150 + 1150 * (0.5 - 0.5 * np.cos(2 * np.pi * (day - 240) / 1440)) ** 1.5
    diurnal = diurnal * np.exp(rng.normal(0, 0.03, day.size))

    six = np.arange(360)
    step = np.where((six >= 120) & (six < 240), 900.0, 300.0) * np.exp(rng.normal(0, 0.03, 360))

    spike = np.full(360, 400.0)
    for start, length, factor in ((60, 20, 2.0), (150, 10, 3.0), (240, 5, 4.0)):
        spike[start : start + length] *= factor
    spike = spike * np.exp(rng.normal(0, 0.03, 360))

    half = np.arange(720)
    level = np.cumsum(rng.normal(0, 0.02, half.size))
    level = level - np.linspace(0, level[-1], half.size)  # drift-free random walk
    noisy = 600 * np.exp(level) * np.exp(rng.normal(0, 0.2, half.size))
    return {"diurnal": diurnal, "step": step, "spike": spike, "noisy": noisy}
