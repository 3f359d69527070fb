"""The log-space least-squares fit: recovery, constraints and trust."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.optimizer import Observation, Window, fit, fit_arrays, fit_knee
from tests.optimizer.synthetic import power_law, varied_window


def _close(estimate: float, truth: float) -> bool:
    """Within 5 % of the truth (absolute 0.05 for exponents near zero)."""
    return abs(estimate - truth) <= max(0.05 * abs(truth), 0.05 if abs(truth) < 1 else 0.0)


def test_recovers_a_alpha_beta_within_5_percent() -> None:
    f = fit(varied_window(120.0, 0.3, 0.6))
    assert f.trustworthy, f.problems
    assert f.a == pytest.approx(120.0, rel=0.05)
    assert f.alpha == pytest.approx(0.3, rel=0.05)
    assert f.beta == pytest.approx(0.6, rel=0.05)
    assert f.r2 > 0.95
    assert f.distinct_instances == 11
    assert f.residual_std == pytest.approx(0.02, rel=0.3)


@settings(max_examples=60, deadline=None)
@given(
    a=st.floats(10, 1000),
    alpha=st.floats(0.0, 1.0),
    beta=st.floats(0.0, 2.0),
    seed=st.integers(0, 10_000),
)
def test_recovery_property(a: float, alpha: float, beta: float, seed: int) -> None:
    f = fit(varied_window(a, alpha, beta, n=120, noise=0.01, seed=seed))
    assert f.a == pytest.approx(a, rel=0.05)
    assert _close(f.alpha, alpha)
    assert _close(f.beta, beta)


def test_beta_fixed_at_zero_is_the_seed_model() -> None:
    c = np.array([1, 2, 4, 8, 16, 2, 4], dtype=float)
    t = 3600.0 * c**-0.7
    f = fit_arrays(c, None, t, beta=0.0)
    assert f.beta_fixed
    assert f.beta == 0.0
    assert f.a == pytest.approx(3600.0, rel=1e-6)
    assert f.alpha == pytest.approx(0.7, rel=1e-6)


def test_beta_fixed_when_per_instance_load_does_not_vary() -> None:
    c = np.arange(2, 14, dtype=float)
    lam = 30.0 * c  # λ/C constant: nothing to learn β from
    f = fit_arrays(c, lam, power_law(100, 0.4, 0.8, c, lam))
    assert f.beta_fixed
    assert f.beta == 0.0


def test_negative_slopes_are_clamped_and_flagged() -> None:
    rng = np.random.default_rng(3)
    c = rng.integers(2, 10, 80).astype(float)
    lam = rng.uniform(5, 60, 80) * c
    t = power_law(200, 0.0, -0.8, c, lam) * np.exp(rng.normal(0, 0.02, 80))
    f = fit_arrays(c, lam, t)
    assert f.beta == 0.0
    assert f.alpha >= 0.0
    assert not f.trustworthy
    assert any("significantly negative" in p for p in f.problems)


def test_single_count_at_constant_load_is_not_identifiable() -> None:
    obs = [Observation(60.0 * i, 4, 100.0, 150.0 + (i % 3)) for i in range(30)]
    f = fit(obs)
    assert not f.trustworthy
    assert not f.identified
    assert f.distinct_instances == 1


def test_noise_without_structure_is_not_trusted() -> None:
    rng = np.random.default_rng(7)
    c = rng.integers(2, 10, 60).astype(float)
    lam = rng.uniform(5, 60, 60) * c
    t = np.exp(rng.normal(5, 0.6, 60))
    f = fit_arrays(c, lam, t)
    assert not f.trustworthy
    assert f.residual_std > 0.3


def test_too_few_points_are_not_trusted() -> None:
    f = fit(list(varied_window(100, 0.2, 0.5).observations)[:5])
    assert not f.trustworthy
    assert any("only 5 points" in p for p in f.problems)


def test_saturated_buckets_and_outliers_are_left_out() -> None:
    base = list(varied_window(100, 0.2, 0.5, n=60).observations)
    overloaded = Observation(1e5, 2, 400.0, 30_000.0, errors=50.0)
    knee = Observation(1e5 + 60, 3, 150.0, 5_000.0)
    f = fit(Window.of([*base, overloaded, knee]))
    assert f.trustworthy, f.problems
    assert f.n == 61  # the saturated bucket never enters
    assert f.outliers == 1
    assert f.beta == pytest.approx(0.5, rel=0.05)


def test_empty_input() -> None:
    f = fit([])
    assert not f.trustworthy
    assert f.n == 0
    assert math.isnan(f.r2)


def test_knee_fit_locates_a_queue_capacity_and_errs_pessimistic() -> None:
    rng = np.random.default_rng(5)
    u = rng.uniform(10.0, 72.0, 150)  # per-instance load up to 90 % of capacity 80
    c = rng.integers(2, 10, 150).astype(float)
    t = (100.0 + 2000.0 / (80.0 - u)) * np.exp(rng.normal(0, 0.03, 150))
    k = fit_knee(c, u * c, t)
    assert k.trustworthy, k.problems
    assert 70.0 < k.capacity_rps <= 80.0 * 1.05  # the smallest plausible capacity, not above it
    truth = 100.0 + 2000.0 / (80.0 - 75.0)
    assert float(k.predict(np.array([4.0]), np.array([300.0]))[0]) >= 0.9 * truth


def test_knee_fit_on_flat_latencies_is_not_located() -> None:
    rng = np.random.default_rng(6)
    u = rng.uniform(10.0, 40.0, 100)
    c = np.full(100, 4.0)
    t = 150.0 * np.exp(rng.normal(0, 0.03, 100))
    k = fit_knee(c, u * c, t)
    assert not k.trustworthy


def _many_worker_p95(u: float, workers: int = 4, service_ms: float = 50.0) -> float:
    """p95 of an M/M/c queue's sojourn, roughly: flat until waits start, then a steep wall
    (steeper than the single-server shape the knee fit assumes)."""
    mu = 1000.0 / service_ms
    a = u / mu
    rho = a / workers
    erlang_b = 1.0
    for k in range(1, workers + 1):
        erlang_b = a * erlang_b / (k + a * erlang_b)
    waits = erlang_b / (1.0 - rho * (1.0 - erlang_b))
    wait_ms = math.log(waits / 0.05) / (workers * mu - u) * 1000.0 if waits > 0.05 else 0.0
    return 30.0 + 3.0 * service_ms + wait_ms


def test_a_load_test_outweighs_a_wall_the_queue_shape_guessed_too_low() -> None:
    # A four-worker queue run at a third to two thirds of its load-tested limit: the one-server
    # shape, fitted to its flat part, cannot reject a wall below that limit.
    rng = np.random.default_rng(3)
    u = rng.uniform(20.0, 40.0, 180)
    c = rng.integers(2, 12, 180).astype(np.float64)
    p95 = np.array([_many_worker_p95(x) for x in u]) * np.exp(rng.normal(0.0, 0.05, u.size))
    limit = max(x for x in np.linspace(1.0, 79.0, 2000) if _many_worker_p95(x) <= 300.0)
    guessed = fit_knee(c, u * c, p95)
    assert guessed.capacity_rps < limit
    # Taken as an observation, the load test moves the wall past it: its load meets the SLO.
    tested = fit_knee(c, u * c, p95, vouched=(limit, 300.0))
    assert tested.capacity_rps > limit
    assert tested.predict(np.array([1.0]), np.array([limit]))[0] <= 300.0
    # Buckets that missed the SLO below the load-tested limit contradict it: the data win.
    missed = np.where(u > 38.0, 320.0, p95)
    doubted = fit_knee(c, u * c, missed, vouched=(limit, 300.0))
    assert doubted.capacity_rps < limit
