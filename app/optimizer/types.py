"""Value types of the optimizer core: frozen, JSON-serialisable through ``to_dict()``."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from app.optimizer.seasonal import SeasonScan

FloatArray = npt.NDArray[np.float64]
Mode = Literal["model", "probe", "fallback", "no_data"]
Action = Literal["scale_out", "scale_in", "hold"]
SATURATED_ERROR_RATIO = 0.01


def median(values: npt.ArrayLike) -> float:
    """The median of a non-empty 1-D array; for the short arrays of a pass several times faster
    than ``np.median``, whose generality costs more than the sort."""
    ordered = np.array(values, dtype=np.float64).ravel()
    ordered.sort()
    n = ordered.size
    return float(ordered[(n - 1) // 2] + ordered[n // 2]) / 2.0


def mean(values: FloatArray) -> float:
    """The mean of a non-empty 1-D array: the same sum and division as ``ndarray.mean``, without
    the dispatch that costs more than the sum on a pass's short arrays."""
    return float(np.add.reduce(values)) / values.size


def json_float(value: float | None, digits: int = 6) -> float | None:
    """A float fit for JSON: rounded, with NaN and infinities as None."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


@dataclass(frozen=True, slots=True)
class Observation:
    """One metric bucket (e.g. one minute) of a deployment."""

    t_s: float
    instances: int
    load_rps: float
    p95_ms: float
    mean_ms: float | None = None
    errors: float = 0.0  # failed requests per second (5xx, timeouts), same unit as load_rps
    bytes_per_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """This observation as JSON-native values."""
        return {
            "t_s": json_float(self.t_s, 3),
            "instances": self.instances,
            "load_rps": json_float(self.load_rps),
            "p95_ms": json_float(self.p95_ms),
            "mean_ms": json_float(self.mean_ms),
            "errors": json_float(self.errors),
            "bytes_per_s": json_float(self.bytes_per_s),
        }


@dataclass(frozen=True)
class WindowArrays:
    """Column view of the usable observations of a window, oldest first."""

    t_s: FloatArray
    instances: FloatArray
    load_rps: FloatArray
    p95_ms: FloatArray
    mean_ms: FloatArray  # NaN where the feed had no mean
    bytes_per_s: FloatArray  # NaN where the feed had no data rate
    errors: FloatArray

    @property
    def n(self) -> int:
        """Number of usable observations."""
        return int(self.t_s.size)

    @cached_property
    def saturated(self) -> npt.NDArray[np.bool_]:
        """Buckets where over 1 % of requests failed: the queue, not the power law, set latency.

        Kept once computed: the fits, the correction and the latency seen all leave them out."""
        return self.errors > SATURATED_ERROR_RATIO * np.maximum(self.load_rps, 1e-9)


@dataclass(frozen=True)
class Window:
    """Recent observations of one deployment and the time of the pass."""

    observations: tuple[Observation, ...]
    now_s: float | None = None

    @classmethod
    def of(cls, observations: Iterable[Observation], now_s: float | None = None) -> Window:
        """A window from any iterable of observations, sorted by time."""
        return cls(tuple(sorted(observations, key=lambda o: o.t_s)), now_s)

    @property
    def time_s(self) -> float:
        """When the pass runs: ``now_s``, else the newest observation, else 0."""
        if self.now_s is not None:
            return self.now_s
        return self.observations[-1].t_s if self.observations else 0.0

    @cached_property
    def arrays(self) -> WindowArrays:
        """Usable rows only: a positive instance count, finite non-negative load, positive p95."""
        nan = float("nan")
        # One pass over the observations into a flat table (None as NaN), then columns and the
        # mask in numpy: a pass builds this for every deployment, and ``fromiter`` over the
        # chained rows skips the nested list ``np.array`` would have to inspect.
        rows = [
            (
                o.t_s,
                o.instances,
                o.load_rps,
                o.p95_ms,
                nan if o.mean_ms is None else o.mean_ms,
                nan if o.bytes_per_s is None else o.bytes_per_s,
                o.errors,
            )
            for o in self.observations
        ]
        flat = itertools.chain.from_iterable(rows)
        table = np.fromiter(flat, dtype=np.float64, count=7 * len(rows)).reshape(-1, 7)
        t, inst, load, p95, mean, rate, errors = table.T
        with np.errstate(invalid="ignore"):
            keep = (inst >= 1) & np.isfinite(load) & (load >= 0) & np.isfinite(p95) & (p95 > 0)
        return WindowArrays(
            t_s=t[keep],
            instances=inst[keep],
            load_rps=load[keep],
            p95_ms=p95[keep],
            mean_ms=mean[keep],
            bytes_per_s=rate[keep],
            errors=errors[keep],
        )

    def summary(self) -> dict[str, Any]:
        """Size and span of the window, for a decision row."""
        obs = self.observations
        return {
            "n_observations": len(obs),
            "n_usable": self.arrays.n,
            "start_s": json_float(obs[0].t_s, 3) if obs else None,
            "end_s": json_float(obs[-1].t_s, 3) if obs else None,
        }


@dataclass(frozen=True, slots=True)
class FitCriteria:
    """When a fit is trusted; defaults suit per-minute latency windows."""

    min_points: int = 10
    min_r2: float = 0.5
    max_residual_std: float = 0.2
    min_load_spread: float = 0.03


@dataclass(frozen=True, slots=True)
class Fit:
    """Least-squares fit of ``t = a·C^(-α)·(λ/C)^β`` in log space, with its quality."""

    a: float
    alpha: float
    beta: float
    beta_fixed: bool
    alpha_identified: bool
    n: int
    distinct_instances: int
    load_spread: float  # std of log(λ/C), the variation β is learnt from
    r2: float  # NaN when the latencies do not vary at all
    residual_std: float  # std of log residuals: 0.1 ≈ predictions within ±10 %
    trustworthy: bool
    problems: tuple[str, ...] = ()  # why it is not trusted; empty when trustworthy
    notes: tuple[str, ...] = ()
    outliers: int = 0  # buckets left out of the fit as far off the line

    @property
    def identified(self) -> bool:
        """Whether the data pinned down at least one of α and β."""
        return self.alpha_identified or not self.beta_fixed

    def predict(self, instances: npt.ArrayLike, load_rps: npt.ArrayLike) -> FloatArray:
        """Predicted value (p95 ms, or duration) at each (C, λ); λ is ignored when β = 0."""
        c = np.asarray(instances, dtype=np.float64)
        lam = np.asarray(load_rps, dtype=np.float64)
        log_t = math.log(self.a) - self.alpha * np.log(c)
        if self.beta != 0.0:
            log_t = log_t + self.beta * np.log(np.maximum(lam, 1e-9) / c)
        return np.asarray(np.exp(log_t), dtype=np.float64)

    def quality(self) -> str:
        """Short human summary of fit quality, as used in reasons."""
        r2 = "n/a" if math.isnan(self.r2) else f"{self.r2:.2f}"
        return f"R²={r2}, distinct C={self.distinct_instances}"

    def to_dict(self) -> dict[str, Any]:
        """This fit as JSON-native values."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("a", "alpha", "beta", "load_spread", "r2", "residual_std"):
            out[key] = json_float(out[key])
        out["problems"] = list(self.problems)
        out["notes"] = list(self.notes)
        return out


@dataclass(frozen=True, slots=True)
class Knee:
    """Queueing fit ``t·C^α = A + B/(μ − λ/C)``: per-instance capacity μ and the latency's knee."""

    a: float  # latency floor (ms) far below capacity
    b: float  # scale of the queueing delay (ms · req/s)
    capacity_rps: float  # μ: per-instance load at which the predicted latency diverges
    alpha: float  # count effect taken from the power-law fit
    n: int
    load_spread: float  # std of log(λ/C)
    residual_std: float  # relative rms error: 0.05 ≈ predictions within ±5 %
    trustworthy: bool
    problems: tuple[str, ...] = ()

    def predict(self, instances: npt.ArrayLike, load_rps: npt.ArrayLike) -> FloatArray:
        """Predicted value at each (C, λ): infinite at or past the fitted capacity."""
        c = np.maximum(np.asarray(instances, dtype=np.float64), 1.0)
        u = np.asarray(load_rps, dtype=np.float64) / c
        gap = self.capacity_rps - u
        # The queueing delay under capacity, infinite at or past it (no division by zero).
        delay = np.divide(self.b, gap, out=np.full_like(gap, np.inf), where=gap > 0)
        t = self.a + delay
        return np.asarray(t * np.power(c, -self.alpha), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """This fit as JSON-native values."""
        return {
            "a": json_float(self.a),
            "b": json_float(self.b),
            "capacity_rps": json_float(self.capacity_rps),
            "alpha": json_float(self.alpha),
            "n": self.n,
            "load_spread": json_float(self.load_spread),
            "residual_std": json_float(self.residual_std),
            "trustworthy": self.trustworthy,
            "problems": list(self.problems),
        }


@dataclass(frozen=True, slots=True)
class Weights:
    """Weights of the four normalised terms of E (default equal)."""

    task_rate: float = 1.0
    data_rate: float = 1.0
    mean_latency: float = 1.0
    p95_latency: float = 1.0

    def __post_init__(self) -> None:
        values = (self.task_rate, self.data_rate, self.mean_latency, self.p95_latency)
        if any(not math.isfinite(w) or w < 0 for w in values) or sum(values) <= 0:
            raise ValueError("efficiency weights must be finite, non-negative, not all zero")

    def to_dict(self) -> dict[str, Any]:
        """These weights as JSON-native values."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Policy:
    """A deployment's scaling policy plus the optimizer's own tuning, with safe defaults."""

    latency_slo_ms: float = 200.0
    headroom: float = 0.2
    cost_weight: float = 0.5
    scale_in_cooldown_s: float = 300.0
    scale_out_cooldown_s: float = 60.0
    max_step: int = 2
    min_instances: int = 1
    max_instances: int = 10
    price_per_instance_hour: float = 1.0
    weights: Weights = field(default_factory=Weights)
    # Target-tracking fallback: requests/s per instance; None derives it from observations.
    fallback_target_rps: float | None = None
    forecast_horizon_s: float = 300.0
    # The SLO itself (not the target with headroom) must hold at the forecast raised by this many
    # σ of the load's bucket-to-bucket variation: an SLO judged per bucket must survive noise.
    # Scale-in needs the full z; scale-out comes at ``decide.SCALE_OUT_Z_GAP`` σ less.
    load_quantile_z: float = 3.0
    # Scale-in must also clear the latency target shrunk by this fraction (hysteresis).
    scale_in_margin: float = 0.1
    # How far past the highest per-instance load seen to meet the target a candidate may go
    # (shrunk further by how close the latency seen there already is to the target).
    explore: float = 0.25
    fit_min_points: int = 10
    fit_min_r2: float = 0.5
    fit_max_residual_std: float = 0.2
    fit_min_load_spread: float = 0.03

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.latency_slo_ms) and self.latency_slo_ms > 0):
            problems.append("latency_slo_ms must be positive")
        if not 0 <= self.headroom < 1:
            problems.append("headroom must lie in [0, 1)")
        if not 0 <= self.cost_weight <= 1:
            problems.append("cost_weight must lie in [0, 1]")
        if not 1 <= self.min_instances <= self.max_instances:
            problems.append("need 1 <= min_instances <= max_instances")
        if self.max_step < 1:
            problems.append("max_step must be at least 1")
        if self.scale_in_cooldown_s < 0 or self.scale_out_cooldown_s < 0:
            problems.append("cooldowns must not be negative")
        if not (math.isfinite(self.price_per_instance_hour) and self.price_per_instance_hour > 0):
            problems.append("price_per_instance_hour must be positive")
        if self.fallback_target_rps is not None and not self.fallback_target_rps > 0:
            problems.append("fallback_target_rps must be positive")
        if not 0 <= self.scale_in_margin < 1 or self.explore < 0:
            problems.append("scale_in_margin must lie in [0, 1) and explore be non-negative")
        if problems:
            raise ValueError("; ".join(problems))

    def fit_criteria(self) -> FitCriteria:
        """The fit-trust thresholds this policy asks for."""
        return FitCriteria(
            min_points=self.fit_min_points,
            min_r2=self.fit_min_r2,
            max_residual_std=self.fit_max_residual_std,
            min_load_spread=self.fit_min_load_spread,
        )

    @property
    def latency_target_ms(self) -> float:
        """The p95 a candidate must meet: the SLO less the headroom."""
        return self.latency_slo_ms * (1.0 - self.headroom)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **overrides: Any) -> Policy:
        """A policy from a stored scaling-policy mapping; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in {**values, **overrides}.items() if k in known}
        if isinstance(kwargs.get("weights"), Mapping):
            kwargs["weights"] = Weights(**kwargs["weights"])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """This policy as JSON-native values."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["weights"] = self.weights.to_dict()
        return out


class Candidate(NamedTuple):
    """One row of the candidate table: what running C instances is predicted to give.

    A named tuple rather than a frozen dataclass: a pass builds a row per allowed count for
    every deployment, and a tuple is built several times faster."""

    instances: int
    load_per_instance_rps: float
    predicted_p95_ms: float
    predicted_mean_ms: float
    efficiency: float
    cost_per_hour: float
    feasible: bool

    def to_dict(self) -> dict[str, Any]:
        """This row as JSON-native values."""
        return {
            "instances": self.instances,
            "load_per_instance_rps": json_float(self.load_per_instance_rps, 3),
            "predicted_p95_ms": json_float(self.predicted_p95_ms, 2),
            "predicted_mean_ms": json_float(self.predicted_mean_ms, 2),
            "efficiency": json_float(self.efficiency, 4),
            "cost_per_hour": json_float(self.cost_per_hour, 4),
            "feasible": self.feasible,
        }


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a decision was computed from, summarised for its row."""

    now_s: float
    current_instances: int
    n_observations: int
    window_start_s: float | None
    window_end_s: float | None
    load_now_rps: float | None
    load_forecast_rps: float | None
    load_peak_rps: float | None
    observed_p95_ms: float | None
    latency_target_ms: float
    utilisation_guard_rps: float | None  # per instance; None when nothing met the target yet
    residual_correction: float

    def to_dict(self) -> dict[str, Any]:
        """These inputs as JSON-native values."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = json_float(value, 4)
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one pass for one deployment, with everything needed to explain it."""

    desired_instances: int
    previous_instances: int
    ideal_instances: int  # what the rule wanted before cooldowns and the step limit
    action: Action
    mode: Mode
    reason: str
    fit: Fit | None
    candidates: tuple[Candidate, ...]
    inputs: Inputs
    fallback_target_rps: float | None = None
    knee: Knee | None = None  # the queueing fit the model used, when trusted
    season: SeasonScan | None = None  # the scan for repeating patterns this decision used

    @property
    def applied(self) -> bool:
        """Whether the decision changes the instance count."""
        return self.desired_instances != self.previous_instances

    def to_dict(self) -> dict[str, Any]:
        """This decision as JSON-native values, ready to store as a row."""
        return {
            "desired_instances": self.desired_instances,
            "previous_instances": self.previous_instances,
            "ideal_instances": self.ideal_instances,
            "action": self.action,
            "applied": self.applied,
            "mode": self.mode,
            "reason": self.reason,
            "fit": self.fit.to_dict() if self.fit is not None else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "inputs": self.inputs.to_dict(),
            "fallback_target_rps": json_float(self.fallback_target_rps, 4),
            "knee": self.knee.to_dict() if self.knee is not None else None,
            "season": self.season.to_dict() if self.season is not None else None,
        }


@dataclass(frozen=True, slots=True)
class State:
    """What the optimizer remembers between passes for one deployment."""

    current_instances: int
    last_scale_out_s: float | None = None
    last_scale_in_s: float | None = None
    last_decision: Decision | None = None
    # The latest scan for repeating patterns: it only changes hourly, so passes reuse it.
    season: SeasonScan | None = None
    # The previous pass's latency target: over a fixed floor it has two regimes, and the
    # previous one holds until the floor clearly leaves it (hysteresis, as for the count).
    latency_target_ms: float | None = None

    def after(self, decision: Decision, now_s: float) -> State:
        """The state once ``decision`` has been applied at ``now_s``."""
        return State(
            current_instances=decision.desired_instances,
            last_scale_out_s=now_s if decision.action == "scale_out" else self.last_scale_out_s,
            last_scale_in_s=now_s if decision.action == "scale_in" else self.last_scale_in_s,
            last_decision=decision,
            season=decision.season or self.season,
            latency_target_ms=decision.inputs.latency_target_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        """This state as JSON-native values (the last decision nested)."""
        return {
            "current_instances": self.current_instances,
            "last_scale_out_s": json_float(self.last_scale_out_s, 3),
            "last_scale_in_s": json_float(self.last_scale_in_s, 3),
            "latency_target_ms": json_float(self.latency_target_ms, 3),
            "last_decision": (
                self.last_decision.to_dict() if self.last_decision is not None else None
            ),
        }


def observations_from_columns(
    t_s: Sequence[float],
    instances: Sequence[int],
    load_rps: Sequence[float],
    p95_ms: Sequence[float],
    mean_ms: Sequence[float] | None = None,
) -> tuple[Observation, ...]:
    """Observations from parallel columns, e.g. a simulator's or a notebook's arrays."""
    means: Sequence[float | None] = mean_ms if mean_ms is not None else [None] * len(t_s)
    return tuple(
        Observation(float(t), int(c), float(lam), float(p), None if m is None else float(m))
        for t, c, lam, p, m in zip(t_s, instances, load_rps, p95_ms, means, strict=True)
    )
