"""Synthetic windows drawn from a known power law, for the optimizer tests."""

from __future__ import annotations

import numpy as np

from app.optimizer import Observation, Window


def power_law(a: float, alpha: float, beta: float, c: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """The true latency ``a·C^(-α)·(λ/C)^β``."""
    return a * c**-alpha * (lam / c) ** beta


def varied_window(
    a: float,
    alpha: float,
    beta: float,
    *,
    n: int = 90,
    noise: float = 0.02,
    seed: int = 0,
    c_range: tuple[int, int] = (2, 12),
    per_instance: tuple[float, float] = (5.0, 60.0),
) -> Window:
    """A window whose C and per-instance load both vary independently."""
    rng = np.random.default_rng(seed)
    c = rng.integers(c_range[0], c_range[1] + 1, n).astype(float)
    lam = rng.uniform(*per_instance, n) * c
    t = power_law(a, alpha, beta, c, lam) * np.exp(rng.normal(0, noise, n))
    return Window(
        tuple(
            Observation(60.0 * i, int(ci), float(li), float(ti), float(ti) / 2)
            for i, (ci, li, ti) in enumerate(zip(c, lam, t, strict=True))
        )
    )
