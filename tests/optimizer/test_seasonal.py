"""Repeating patterns: found where they are, never in noise, and acted on before the rise."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from app.optimizer import Observation, Policy, State, Window, decide
from app.optimizer.bounds import SLO_EXPLORE_SHARE
from app.optimizer.seasonal import scan

MINUTE = 60.0
POLICY = Policy(latency_slo_ms=300.0, min_instances=1, max_instances=60)


def _minutes(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) * MINUTE


def _pattern_free(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "noise":
        return np.asarray(500 * np.exp(rng.normal(0, 0.3, n)))
    if kind == "walk":
        return np.asarray(500 * np.exp(np.cumsum(rng.normal(0, 0.03, n))))
    if kind == "walk+noise":
        return np.asarray(500 * np.exp(np.cumsum(rng.normal(0, 0.02, n)) + rng.normal(0, 0.2, n)))
    return np.asarray(300 + 100 * rng.pareto(1.5, n))  # heavy-tailed bursts, no rhythm


@pytest.mark.parametrize("kind", ["noise", "walk", "walk+noise", "heavy"])
def test_no_pattern_is_found_in_noise_or_random_walks(kind: str) -> None:
    found = []
    for seed in range(25):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(6 * 60, 3 * 1440))
        result = scan(_minutes(n), _pattern_free(kind, rng, n), 600.0)
        if result.pattern is not None:
            found.append((seed, result.pattern.period_s))
    assert found == []


def _bursts(n: int, period: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.arange(n)
    return np.where(m % period < width, 1200.0, 300.0) * np.exp(rng.normal(0, 0.05, n))


@pytest.mark.parametrize(("period", "width"), [(30, 5), (60, 10), (120, 15)])
def test_a_batch_rhythm_is_found_with_its_period(period: int, width: int) -> None:
    result = scan(_minutes(1440), _bursts(1440, period, width), 600.0)
    assert result.pattern is not None
    assert result.pattern.period_s == period * MINUTE
    assert result.pattern.strength > 0.5


def test_a_daily_cycle_is_found_in_days_of_five_minute_history() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(0.0, 4 * 86400.0, 300.0)
    load = (200 + 1000 * np.sin(np.pi * (t % 86400) / 86400) ** 2) * np.exp(
        rng.normal(0, 0.05, t.size)
    )
    result = scan(t, load, 600.0)
    assert result.pattern is not None
    assert result.pattern.period_s == 86400.0


def _feed(load: np.ndarray, per_instance: float = 40.0) -> tuple[Observation, ...]:
    """Observations of a deployment that always ran enough instances for its load, with a p95
    growing with the load per instance."""
    out = []
    for i, lam in enumerate(load):
        c = max(1, int(np.ceil(lam / per_instance)))
        p95 = 40.0 + 2.0 * lam / c
        out.append(Observation((i + 1) * MINUTE, c, float(lam), p95, p95 / 2))
    return tuple(out)


def test_capacity_is_added_before_a_foreseen_burst_and_the_reason_says_so() -> None:
    # A day of hourly bursts (minutes 0-9 of each hour); the pass runs at minute 52.
    n = 23 * 60 + 52
    observations = _feed(_bursts(n, 60, 10))
    now = observations[-1].t_s
    current = observations[-1].instances
    decision = decide(Window(observations, now), POLICY, State(current_instances=current))
    assert decision.action == "scale_out"
    # Enough for the burst at the per-instance load it always ran at, or a little past it where
    # the latency seen there leaves room (the SLO guard's slow exploration).
    explored = 40.0 * (1.0 + SLO_EXPLORE_SHARE * POLICY.explore)
    assert decision.desired_instances >= 1200 / explored
    assert decision.reason.startswith("Pattern with period 60 min, strength ")
    assert "pre-scaling for the rise expected at 00:00 UTC" in decision.reason
    assert decision.season is not None
    assert decision.to_dict()["season"]["pattern"]["period_s"] == 3600.0


def test_without_a_pattern_a_long_history_changes_nothing() -> None:
    rng = np.random.default_rng(7)
    observations = _feed(_pattern_free("walk+noise", rng, 2 * 1440))
    now = observations[-1].t_s
    state = State(current_instances=observations[-1].instances)
    long = decide(Window(observations, now), POLICY, state)
    short = decide(Window(observations[-180:], now), POLICY, state)
    assert long.season is not None
    assert long.season.pattern is None
    assert (long.desired_instances, long.reason) == (short.desired_instances, short.reason)


def test_a_fresh_scan_is_reused_and_a_stale_one_redone() -> None:
    observations = _feed(_bursts(1440, 60, 10))
    now = observations[-1].t_s
    first = decide(Window(observations, now), POLICY, State(current_instances=8))
    assert first.season is not None
    state = State(current_instances=8).after(first, now)
    assert state.season is first.season
    # Within the hour the short window is enough: the kept scan still foresees the bursts.
    later = decide(Window(observations[-180:], now + 60.0), POLICY, state)
    assert later.season is first.season
    stale = replace(state, season=replace(first.season, computed_s=now - 7200.0))
    redone = decide(Window(observations, now), POLICY, stale)
    assert redone.season is not None
    assert redone.season.computed_s == now


def _burst_train(rng: np.random.Generator, n: int, every: float) -> np.ndarray:
    """Flat load with bursts at random times (``every`` minutes apart on average), Pareto
    heights, 3-10 minutes long: no rhythm, but they keep coming."""
    load = np.ones(n)
    t = 0
    while (t := t + int(rng.exponential(every)) + 1) < n:
        load[t : t + int(rng.integers(3, 11))] += min(float(rng.pareto(1.5)) + 0.2, 6.0)
    return 300.0 * load * np.exp(rng.normal(0, 0.05, n))


def test_recurring_bursts_are_measured_and_single_events_are_not() -> None:
    for seed in range(10):
        rng = np.random.default_rng(seed)
        bursts = scan(_minutes(1440), _burst_train(rng, 1440, 40.0), 600.0)
        assert bursts.pattern is None
        # Log spare: a height most bursts stay under, never more than the tallest (7× the level).
        assert 0.2 < bursts.burst < np.log(7.0), seed
        rare = scan(_minutes(1440), _burst_train(rng, 1440, 400.0), 600.0)
        assert rare.burst == 0.0, seed
    m = np.arange(1440)
    steps = 300.0 * np.where((m // 180) % 2 == 1, 2.5, 1.0)
    flash = 300.0 * (1.0 + 4.0 * np.exp(-np.maximum(m - 1000, 0) / 60.0) * (m >= 1000))
    for load in (steps, flash, _pattern_free("walk+noise", np.random.default_rng(3), 1440)):
        assert scan(_minutes(1440), load, 600.0).burst == 0.0


def test_recurring_bursts_keep_spare_capacity_and_a_quiet_history_does_not() -> None:
    rng = np.random.default_rng(11)
    load = _burst_train(rng, 1440, 40.0)
    quiet = 300.0 * np.exp(rng.normal(0, 0.05, 1440))
    decisions = []
    for series in (load, quiet):
        series = series.copy()
        series[-30:] = 300.0  # the same quiet half hour right now
        observations = _feed(series)
        now = observations[-1].t_s
        state = State(current_instances=observations[-1].instances)
        decisions.append(decide(Window(observations, now), POLICY, state))
    bursty, calm = decisions
    assert bursty.season is not None
    assert bursty.season.burst > 0.2
    assert calm.season is not None
    assert calm.season.burst == 0.0
    assert bursty.inputs.load_peak_rps is not None
    assert calm.inputs.load_peak_rps is not None
    assert bursty.inputs.load_peak_rps > 1.2 * calm.inputs.load_peak_rps


@pytest.mark.parametrize("offset", range(10))
def test_the_reason_names_the_pattern_whichever_minute_the_pass_runs(offset: int) -> None:
    # Hourly ten-minute bursts, the next one five minutes away; the pass may run at any minute,
    # so the look-ahead's first 5-minute bucket may already be the burst's.
    end = 86400.0 * 20 + 60.0 * offset
    observations = []
    for i in range(3 * 1440, 0, -1):
        burst = (-i - 5) % 60 < 10
        load, instances = (15.0, 2) if burst else (5.0, 1)
        p95 = 20.0 + 12.0 * load / instances
        observations.append(Observation(end - 60.0 * i, instances, load, p95, p95 / 2))
    policy = Policy(latency_slo_ms=200.0, max_instances=4)
    decision = decide(Window(tuple(observations), end), policy, State(current_instances=1))
    assert decision.action == "scale_out"
    assert decision.reason.startswith("Pattern with period 60 min, strength "), decision.reason


def _downsampled(t: np.ndarray, load: np.ndarray, recent_s: float) -> tuple[np.ndarray, ...]:
    """The history as a pass gets it: 5-minute means, then the newest ``recent_s`` per minute."""
    old = t < t[-1] - recent_s
    buckets = np.floor(t[old] / 300.0)
    keys = np.unique(buckets)
    means = np.array([load[old][buckets == k].mean() for k in keys])
    return (
        np.concatenate([(keys + 0.5) * 300.0, t[~old]]),
        np.concatenate([means, load[~old]]),
        t[~old],
        load[~old],
    )


def test_a_batch_shorter_than_a_bucket_is_foreseen_at_its_minutes_not_the_buckets_mean() -> None:
    from app.optimizer.seasonal import rise, within_bucket

    rng = np.random.default_rng(4)
    n = 3 * 1440 + 40  # the pass runs 5 minutes before a batch
    m = np.arange(n)
    # Every 45 minutes a 3-minute batch at 4× the load: a 5-minute bucket's mean is 2.2×.
    load = np.where(m % 45 < 3, 1200.0, 300.0) * np.exp(rng.normal(0, 0.03, n))
    t_all, load_all, t, recent = _downsampled((m + 1) * MINUTE, load, 3 * 3600.0)
    found = scan(t_all, load_all, 600.0)
    assert found.pattern is not None
    assert found.pattern.period_s == 45 * MINUTE
    ahead = rise(found.pattern, t, recent, float(t[-1]), 600.0)
    assert ahead.gain > 2.0
    assert ahead.peak_rps > 1100.0  # the batch's minutes; the bucket's mean is ≈ 660
    assert ahead.expected_rps > 1100.0
    # A smooth pattern hides nothing at its top: no factor for the noise of the minutes.
    smooth = 300.0 * (2.0 + np.sin(2 * np.pi * m / 45.0)) * np.exp(rng.normal(0, 0.03, n))
    t_all, load_all, t, recent = _downsampled((m + 1) * MINUTE, smooth, 3 * 3600.0)
    pattern = scan(t_all, load_all, 600.0).pattern
    assert pattern is not None
    assert within_bucket(pattern, t, recent, int(np.argmax(pattern.mean))) == 1.0


@pytest.mark.parametrize("end", range(35, 45))
def test_a_smooth_ramp_is_expected_at_the_look_ahead_not_a_bucket_beyond(end: int) -> None:
    from app.optimizer.seasonal import rise

    rng = np.random.default_rng(end)
    n = 3 * 1440 + end  # the pattern is rising at the pass
    m = np.arange(n)
    wave = 300.0 * (2.0 + np.sin(2 * np.pi * m / 45.0))
    t_all, load_all, t, recent = _downsampled(
        (m + 1) * MINUTE, wave * np.exp(rng.normal(0, 0.03, n)), 3 * 3600.0
    )
    pattern = scan(t_all, load_all, 300.0).pattern
    assert pattern is not None
    ahead = rise(pattern, t, recent, float(t[-1]), 300.0)
    at_horizon, a_bucket_later = (
        300.0 * (2.0 + np.sin(2 * np.pi * (n - 1 + k) / 45.0)) for k in (5, 10)
    )
    assert 0.8 * at_horizon < ahead.expected_rps < (at_horizon + a_bucket_later) / 2
