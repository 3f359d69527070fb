"""Training-side recommendation: the same power-law fit over (instance_count, duration)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from app.optimizer.fit import fit_arrays
from app.optimizer.types import Fit, FitCriteria, json_float

# Training history is short: a handful of runs already says a lot when they span several counts.
TRAINING_CRITERIA = FitCriteria(min_points=3, min_r2=0.6, max_residual_std=0.3)
# Candidates stop at this multiple of the largest count ever run: a power law fitted on 1-8
# instances says little about 64.
EXTRAPOLATION_LIMIT = 2


@dataclass(frozen=True, slots=True)
class TrainingRun:
    """One finished run of the project: how many instances, how long, at what price."""

    instance_count: int
    duration_s: float
    price_per_instance_hour: float


@dataclass(frozen=True, slots=True)
class TrainingOption:
    """Predicted duration and cost of the next run on a given instance count."""

    instance_count: int
    duration_s: float
    cost: float

    def to_dict(self) -> dict[str, Any]:
        """This option as JSON-native values."""
        return {
            "instance_count": self.instance_count,
            "duration_s": json_float(self.duration_s, 1),
            "cost": json_float(self.cost, 4),
        }


@dataclass(frozen=True, slots=True)
class TrainingRecommendation:
    """The recommended count, the cheapest and fastest alternatives, and why."""

    instance_count: int
    mode: Literal["model", "fallback", "no_data"]
    reason: str
    fit: Fit | None
    options: tuple[TrainingOption, ...]
    cheapest: TrainingOption | None
    fastest: TrainingOption | None

    def to_dict(self) -> dict[str, Any]:
        """This recommendation as JSON-native values."""
        return {
            "instance_count": self.instance_count,
            "mode": self.mode,
            "reason": self.reason,
            "fit": self.fit.to_dict() if self.fit is not None else None,
            "options": [o.to_dict() for o in self.options],
            "cheapest": self.cheapest.to_dict() if self.cheapest else None,
            "fastest": self.fastest.to_dict() if self.fastest else None,
        }


def recommend_instance_count(
    past_runs: Sequence[TrainingRun],
    *,
    min_count: int = 1,
    max_count: int | None = None,
    cost_weight: float = 0.5,
    max_duration_s: float | None = None,
    price_per_instance_hour: float | None = None,
) -> TrainingRecommendation:
    """Recommend ``instance_count`` for the next run from past runs' durations."""
    runs = [r for r in past_runs if r.instance_count >= 1 and r.duration_s > 0]
    if not runs:
        return TrainingRecommendation(
            min_count,
            "no_data",
            f"No finished runs yet; starting at {min_count}.",
            None,
            (),
            None,
            None,
        )
    price = price_per_instance_hour or runs[-1].price_per_instance_hour
    counts = np.array([r.instance_count for r in runs], dtype=np.float64)
    durations = np.array([r.duration_s for r in runs], dtype=np.float64)
    f = fit_arrays(counts, None, durations, beta=0.0, criteria=TRAINING_CRITERIA)
    top = min(max_count or math.inf, EXTRAPOLATION_LIMIT * int(counts.max()))
    grid = np.arange(min_count, max(int(top), min_count) + 1, dtype=np.float64)
    options = _options(f, grid, price)

    if not f.trustworthy:
        # Fall back on evidence: the past run that cost least per run, its count reused.
        costs = counts * durations / 3600.0 * price
        best = runs[int(np.argmin(costs))]
        reason = (
            f"fallback: fit not trustworthy ({f.quality()}); reusing {best.instance_count} "
            f"instances, the cheapest past run ({best.duration_s / 3600:.2f} h)."
        )
        return TrainingRecommendation(
            best.instance_count, "fallback", reason, f, options, None, None
        )

    allowed = [o for o in options if max_duration_s is None or o.duration_s <= max_duration_s]
    pool = allowed or [min(options, key=lambda o: o.duration_s)]
    cheapest = min(pool, key=lambda o: (o.cost, o.duration_s))
    fastest = min(pool, key=lambda o: (o.duration_s, o.cost))
    # Both terms relative to the cheapest option, so cost_weight trades percentages for percentages.
    chosen = min(
        pool,
        key=lambda o: (
            cost_weight * o.cost / cheapest.cost
            + (1 - cost_weight) * o.duration_s / cheapest.duration_s,
            o.cost,
        ),
    )
    reason = (
        f"{chosen.instance_count} instances: predicted {_hours(chosen.duration_s)} for "
        f"{chosen.cost:.2f}, against the cheapest {cheapest.instance_count} "
        f"({_hours(cheapest.duration_s)}, {cheapest.cost:.2f}) and the fastest "
        f"{fastest.instance_count} ({_hours(fastest.duration_s)}, {fastest.cost:.2f}), "
        f"from duration ∝ C^-{f.alpha:.2f} ({f.quality()})."
    )
    if not allowed:
        reason = f"No count meets the {_hours(max_duration_s or 0)} limit; " + reason
    return TrainingRecommendation(
        chosen.instance_count, "model", reason, f, options, cheapest, fastest
    )


def _options(
    f: Fit, grid: np.ndarray[Any, np.dtype[np.float64]], price: float
) -> tuple[TrainingOption, ...]:
    durations = f.predict(grid, np.ones_like(grid))
    return tuple(
        TrainingOption(int(c), float(d), float(c * d / 3600.0 * price))
        for c, d in zip(grid, durations, strict=True)
    )


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
