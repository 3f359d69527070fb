"""The normalised efficiency E and the short-term load forecast."""

from __future__ import annotations

import numpy as np
import pytest

from app.optimizer import Baseline, Weights, efficiency, forecast_load
from app.optimizer.forecast import falling, load_sigma

BASE = Baseline(task_rate=100.0, data_rate=None, mean_ms=50.0, p95_ms=120.0)


def test_efficiency_is_one_at_the_baseline() -> None:
    e = efficiency(task_rate=100.0, mean_ms=50.0, p95_ms=120.0, baseline=BASE)
    assert float(e) == pytest.approx(1.0)


def test_efficiency_rises_with_throughput_and_falls_with_latency() -> None:
    e = efficiency(
        task_rate=[100.0, 200.0, 100.0],
        mean_ms=[50.0, 50.0, 100.0],
        p95_ms=[120.0] * 3,
        baseline=BASE,
    )
    assert e[1] > e[0] > e[2]


def test_weights_select_terms_and_missing_terms_drop_out() -> None:
    only_p95 = Weights(task_rate=0.0, data_rate=0.0, mean_latency=0.0, p95_latency=1.0)
    e = efficiency(task_rate=999.0, mean_ms=1.0, p95_ms=60.0, baseline=BASE, weights=only_p95)
    assert float(e) == pytest.approx(2.0)
    with_data = Baseline(task_rate=100.0, data_rate=1e6, mean_ms=50.0, p95_ms=120.0)
    e = efficiency(task_rate=100.0, data_rate=2e6, mean_ms=50.0, p95_ms=120.0, baseline=with_data)
    assert float(e) == pytest.approx((1 + 2 + 1 + 1) / 4)


def test_weights_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="weights"):
        Weights(0.0, 0.0, 0.0, 0.0)


def test_forecast_follows_a_step_at_once() -> None:
    t = np.arange(30) * 60.0
    load = np.where(np.arange(30) < 29, 100.0, 300.0)
    assert forecast_load(t, load, 300.0) >= 300.0


def test_forecast_extrapolates_a_ramp_but_not_noise() -> None:
    t = np.arange(30) * 60.0
    ramp = 100.0 + 5.0 * np.arange(30)
    assert forecast_load(t, ramp, 300.0) == pytest.approx(245.0 + 25.0, rel=0.01)
    noisy = 100.0 * np.exp(np.random.default_rng(1).normal(0, 0.2, 30))
    assert forecast_load(t, noisy, 300.0) <= noisy.max()


def test_forecast_holds_up_while_load_falls() -> None:
    t = np.arange(30) * 60.0
    falling = np.linspace(300.0, 100.0, 30)
    assert forecast_load(t, falling, 300.0) > 100.0


def test_load_sigma_measures_bucket_noise_not_trend() -> None:
    t = np.arange(60) * 60.0
    assert load_sigma(t, 100.0 + 10.0 * np.arange(60)) < 0.01
    noisy = 100.0 * np.exp(np.random.default_rng(2).normal(0, 0.1, 60))
    assert load_sigma(t, noisy) == pytest.approx(0.1, rel=0.35)


def test_forecast_discounts_a_noisy_current_bucket_but_follows_a_jump() -> None:
    t = np.arange(30) * 60.0
    high_by_chance = np.append(np.full(29, 100.0), 130.0)
    # σ = 0.1, z = 3: a 30 % bucket is within the noise margin, so the level stays near the EWMA.
    assert forecast_load(t, high_by_chance, 300.0, sigma=0.1, z=3.0) < 115.0
    assert forecast_load(t, high_by_chance, 300.0) == pytest.approx(130.0)
    jump = np.append(np.full(29, 100.0), 300.0)
    assert forecast_load(t, jump, 300.0, sigma=0.1, z=3.0) >= 300.0 * np.exp(-0.3) - 1e-9


def test_forecast_follows_a_steady_decay_without_the_ewma_lag() -> None:
    # A crowd leaving: −1.5 %/min for half an hour, 3 % noise. The EWMA's buckets are ~7 min
    # old on average, so it lags ~10 % above the load; the level moved to now does not.
    t = np.arange(40) * 60.0
    level = 1000.0 * np.exp(-0.015 * np.arange(40))
    decay = level * np.exp(np.random.default_rng(3).normal(0, 0.03, 40))
    weights = np.exp2(-(t[-1] - t) / 300.0)
    assert float(weights @ decay / weights.sum()) > 1.08 * level[-1]
    assert forecast_load(t, decay, 300.0) == pytest.approx(level[-1], rel=0.05)
    assert falling(t, decay)
    # A step down is followed, but nothing is extrapolated below the newest buckets.
    step = np.where(np.arange(40) < 30, 1000.0, 400.0)
    assert forecast_load(t, step, 300.0) == pytest.approx(400.0)
    flat = 500.0 * np.exp(np.random.default_rng(4).normal(0, 0.05, 40))
    assert not falling(t, flat)


def test_a_surge_that_levelled_off_is_not_extrapolated() -> None:
    # A crowd: flat, three minutes of climbing, then level. The line through the ten minutes
    # climbs steeply with a high R²; the newest buckets no longer do.
    t = np.arange(10) * 60.0
    surge = np.array([4.0, 4.0, 4.4, 4.4, 9.9, 13.1, 18.5, 18.5, 21.2, 17.2]) * 100.0
    assert forecast_load(t, surge, 300.0) <= surge.max()
    # A ramp whose newest buckets still climb is followed ahead.
    ramp = 400.0 + 150.0 * np.arange(10)
    assert forecast_load(t, ramp, 300.0) == pytest.approx(ramp[-1] + 150.0 * 5, rel=0.01)
