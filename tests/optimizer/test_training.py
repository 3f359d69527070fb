"""Training-side instance_count recommendation from past runs."""

from __future__ import annotations

import json

import pytest

from app.optimizer.training import TrainingRun, recommend_instance_count


def _runs(alpha: float) -> list[TrainingRun]:
    return [TrainingRun(c, 7200.0 * c**-alpha, 3.0) for c in (1, 2, 4, 8, 2, 4)]


def test_fit_recovers_the_scaling_exponent() -> None:
    rec = recommend_instance_count(_runs(0.8))
    assert rec.mode == "model"
    assert rec.fit is not None
    assert rec.fit.alpha == pytest.approx(0.8, rel=0.05)
    assert rec.fit.a == pytest.approx(7200.0, rel=0.05)


def test_cost_only_picks_the_cheapest_and_the_reason_states_the_trade_off() -> None:
    rec = recommend_instance_count(_runs(0.8), cost_weight=1.0)
    assert rec.cheapest is not None
    assert rec.fastest is not None
    assert rec.instance_count == rec.cheapest.instance_count == 1  # sub-linear speed-up
    assert rec.fastest.instance_count == 16  # the extrapolation limit: 2 × the largest run
    assert "cheapest" in rec.reason
    assert "fastest" in rec.reason


def test_super_linear_speed_up_makes_more_instances_cheaper() -> None:
    rec = recommend_instance_count(_runs(1.2), cost_weight=1.0)
    assert rec.instance_count == 16


def test_balanced_weight_lands_between() -> None:
    rec = recommend_instance_count(_runs(0.8), cost_weight=0.5)
    assert 1 < rec.instance_count < 16


def test_duration_limit_is_respected() -> None:
    rec = recommend_instance_count(_runs(0.8), max_duration_s=1800.0, cost_weight=1.0)
    chosen = next(o for o in rec.options if o.instance_count == rec.instance_count)
    assert chosen.duration_s <= 1800.0


def test_falls_back_with_one_distinct_count() -> None:
    runs = [TrainingRun(4, 3000.0, 3.0), TrainingRun(4, 3100.0, 3.0)]
    rec = recommend_instance_count(runs)
    assert rec.mode == "fallback"
    assert rec.reason.startswith("fallback: fit not trustworthy")
    assert rec.instance_count == 4


def test_no_runs() -> None:
    rec = recommend_instance_count([], min_count=2)
    assert rec.mode == "no_data"
    assert rec.instance_count == 2


def test_json() -> None:
    json.dumps(recommend_instance_count(_runs(0.8)).to_dict(), allow_nan=False)
