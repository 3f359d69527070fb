"""The seed's efficiency ``E = N/T + D/T + 1/t̄ + 1/Δ``, made dimensionless.

Each term is divided by the same term at the deployment's own baseline (the medians of its recent
window), so every term is 1 at the baseline, higher is better, and the weighted mean of the terms
is comparable across deployments: E = 1.1 means "10 % better than usual" whatever the units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.optimizer.types import FloatArray, Weights, WindowArrays, json_float, median


@dataclass(frozen=True, slots=True)
class Baseline:
    """Reference values of the four terms; None drops a term the feed does not carry."""

    task_rate: float | None  # N/T: requests served per second
    data_rate: float | None  # D/T: bytes per second
    mean_ms: float | None  # t̄: mean response time
    p95_ms: float | None  # Δ: p95 latency

    @classmethod
    def from_window(cls, cols: WindowArrays) -> Baseline:
        """Medians of the window's columns; a column with no finite positive value is dropped."""
        return cls(
            task_rate=_median_positive(cols.load_rps),
            data_rate=_median_positive(cols.bytes_per_s),
            mean_ms=_median_positive(cols.mean_ms),
            p95_ms=_median_positive(cols.p95_ms),
        )

    def to_dict(self) -> dict[str, Any]:
        """This baseline as JSON-native values."""
        return {
            "task_rate": json_float(self.task_rate),
            "data_rate": json_float(self.data_rate),
            "mean_ms": json_float(self.mean_ms),
            "p95_ms": json_float(self.p95_ms),
        }


def efficiency(
    *,
    task_rate: npt.ArrayLike,
    mean_ms: npt.ArrayLike,
    p95_ms: npt.ArrayLike,
    data_rate: npt.ArrayLike | None = None,
    baseline: Baseline,
    weights: Weights | None = None,
) -> FloatArray:
    """Weighted mean of the normalised terms (rates over baseline, baseline over latencies)."""
    w = weights or Weights()
    terms: list[tuple[float, FloatArray]] = []
    if baseline.task_rate is not None:
        terms.append((w.task_rate, _arr(task_rate) / baseline.task_rate))
    if baseline.data_rate is not None and data_rate is not None:
        terms.append((w.data_rate, _arr(data_rate) / baseline.data_rate))
    if baseline.mean_ms is not None:
        terms.append((w.mean_latency, baseline.mean_ms / _arr(mean_ms)))
    if baseline.p95_ms is not None:
        terms.append((w.p95_latency, baseline.p95_ms / _arr(p95_ms)))
    total = sum(weight for weight, _ in terms)
    acc = np.zeros_like(_arr(p95_ms))
    if total <= 0:
        return acc + 1.0
    for weight, term in terms:
        acc = acc + weight * term
    return np.asarray(acc / total, dtype=np.float64)


def _arr(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _median_positive(values: FloatArray) -> float | None:
    ok = values[np.isfinite(values) & (values > 0)]
    if ok.size == 0:
        return None
    med = float(median(ok))
    return med if math.isfinite(med) and med > 0 else None
