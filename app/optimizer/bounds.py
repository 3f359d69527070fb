"""What a candidate count is judged by: the predictor (the power law and, when located, the
queueing fit, corrected to the newest buckets), the latency target over a fixed floor, and the
per-instance load guards that keep it within what was observed or load-tested."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.optimizer.fit import fit_arrays, fit_knee
from app.optimizer.types import Fit, FloatArray, Knee, Policy, WindowArrays, median

BoolArray = npt.NDArray[np.bool_]

# How many of the newest observations anchor predictions to what is happening now.
RECENT_POINTS = 5
# The target-tracking fallback aims at this fraction of the highest per-instance load observed to
# meet the SLO, as AWS's recipe does with a load-tested maximum.
FALLBACK_SAFETY = 0.5
# The latency's floor is read at this many times the fewest instances that meet the SLO.
FLOOR_REACH = 4.0
# The SLO's guard explores past the loads seen at this share of the target guard's pace.
SLO_EXPLORE_SHARE = 0.4
# ... and only while the latency at the highest loads seen has used less than this share of the
# room between its floor and the SLO.
SLO_EXPLORE_ROOM = 0.9
# The load test vouches for a lone instance. Once the loads seen reach this share of it with the
# latency still flat, the service is not behaving like a lone instance (whose p95 is at the SLO
# there by definition): it pools, and the guard explores past the load test as past a seen load.
VOUCHED_NEAR = 0.9


def fit_window(cols: WindowArrays, policy: Policy) -> Fit:
    """The power-law fit over the unsaturated buckets of ``cols``."""
    keep = ~cols.saturated
    return fit_arrays(
        cols.instances[keep],
        cols.load_rps[keep],
        cols.p95_ms[keep],
        criteria=policy.fit_criteria(),
    )


def vouched_load(policy: Policy) -> float | None:
    """Per-instance load a load test vouches for under the SLO: the recipe's target is half it."""
    target = policy.fallback_target_rps
    return None if target is None else target / FALLBACK_SAFETY


def knee_for(f: Fit, cols: WindowArrays, policy: Policy) -> Knee | None:
    """The queueing fit on the unsaturated buckets, when the power law is trusted and it is too."""
    if not f.trustworthy:
        return None
    keep = ~cols.saturated
    good = vouched_load(policy)
    k = fit_knee(
        cols.instances[keep],
        cols.load_rps[keep],
        cols.p95_ms[keep],
        alpha=f.alpha,
        vouched=None if good is None else (good, policy.latency_slo_ms),
    )
    return k if k.trustworthy else None


def predict(f: Fit, knee: Knee | None, counts: FloatArray, load: FloatArray) -> FloatArray:
    """The more pessimistic of the power law and, when trusted, the queueing fit, at each count
    and its load (``load`` broadcasts against ``counts``: a column of loads gives a row each)."""
    p95 = f.predict(counts, load)
    return p95 if knee is None else np.maximum(p95, knee.predict(counts, load))


def predicted(
    f: Fit, knee: Knee | None, corr: float, counts: FloatArray, loads: Sequence[float]
) -> FloatArray:
    """The p95 each count is judged by at each total load, a row per load: the predictor,
    corrected by ``corr`` to the newest buckets. The loads of a pass share one call."""
    column = np.array([max(load, 1e-9) for load in loads])[:, None]
    rows = np.empty((column.size, counts.size))
    rows[:] = predict(f, knee, counts, column) * corr  # one row for all when β = 0
    return rows


def policy_counts(policy: Policy) -> FloatArray:
    """Every instance count the policy allows, ascending."""
    return np.arange(policy.min_instances, policy.max_instances + 1, dtype=np.float64)


def residual_correction(f: Fit, knee: Knee | None, cols: WindowArrays) -> float:
    """Factor ≥ 1 so that predictions never fall below what the newest buckets observed."""
    # Saturated buckets measure a growing queue, which the guard and the urgency rule handle;
    # letting their timeouts scale every prediction would make every count look infeasible.
    usable = (~cols.saturated).nonzero()[0][-RECENT_POINTS:]
    if usable.size == 0:
        return 1.0
    model = predict(f, knee, cols.instances[usable], cols.load_rps[usable])
    ratio = cols.p95_ms[usable] / model
    ratio = ratio[np.isfinite(ratio)]
    return max(1.0, float(median(ratio))) if ratio.size else 1.0


def latency_target(
    f: Fit,
    knee: Knee | None,
    corr: float,
    policy: Policy,
    load: float,
    previous: float | None = None,
    seen_low: float = 0.0,
    p95: FloatArray | None = None,
) -> tuple[float, float]:
    """(target, floor): the SLO less the headroom or, when the latency's floor lies above that,
    halfway between the floor and the SLO. A fixed overhead that no count removes must not send
    every deployment to its maximum. ``previous`` is the last pass's target (hysteresis), and
    ``seen_low`` the lowest p95 the window shows (robustly): a raised target keeps a floor of
    at least that, since the fits' floor wanders with their shape while the overhead stays.

    The floor is the p95 the candidates are judged by (the fits, corrected to the newest buckets)
    at ``FLOOR_REACH`` times the fewest instances that meet the SLO (at most the policy's
    maximum): what is left when more instances no longer help. Further out the power law
    extrapolates a fall that an overhead does not make, and a spurious count effect would pull
    the floor, and so the target, down to what only the maximum count reaches. ``p95``: those
    predictions at ``load`` for ``policy_counts``, when already made (a pass judges its
    candidates by the same).
    """
    target = policy.latency_target_ms
    if not f.trustworthy:
        return target, 0.0
    over = previous is not None and target < previous <= policy.latency_slo_ms
    counts = policy_counts(policy)
    if p95 is None:
        p95 = predicted(f, knee, corr, counts, (load,))[0]
    meets = (p95 <= policy.latency_slo_ms).nonzero()[0]
    need = int(meets[0]) if meets.size else counts.size - 1
    top = min(counts.size - 1, round(FLOOR_REACH * float(counts[need])) - policy.min_instances)
    floor = float(p95[max(top, need)])
    if not math.isfinite(floor):
        return target, 0.0
    if over:
        # The fits' floor wanders with their fitted shape; a raised target only falls back
        # once the latency seen also has: no bucket-level evidence below it, no fall.
        floor = max(floor, seen_low)
    # Hysteresis between the regimes: once the target was raised over the floor, it stays raised
    # until the floor falls clearly (the scale-in margin) below the plain target.
    if floor > target * (1.0 - policy.scale_in_margin if over else 1.0):
        target = max(target, min((floor + policy.latency_slo_ms) / 2.0, policy.latency_slo_ms))
    return target, floor


def load_guard(
    cols: WindowArrays, per_inst: FloatArray, limit_ms: float, explore: float, floor_ms: float = 0.0
) -> float | None:
    """Highest per-instance load to allow: a little past the highest seen to meet ``limit_ms``."""
    met = cols.p95_ms <= limit_ms
    if not np.count_nonzero(met):
        return None
    ok_max = float(per_inst[met].max())
    # Explore less the nearer the latency seen at the highest good load is to the limit, counted
    # above the latency's floor (what no count removes): the queue's knee is where the
    # log-linear model is most wrong, and only the queueing part of latency grows towards it.
    room = _room(cols, per_inst, met, limit_ms, floor_ms)
    # A miss above the highest good load stops exploration there; one below it is left to the
    # fit and the residual correction, so a single odd bucket cannot collapse the guard.
    missed = per_inst[~met]
    bad_min = float(missed.min()) if missed.size else math.inf
    return min(max(bad_min, ok_max), ok_max * (1.0 + min(explore, room)))


@dataclass(frozen=True)
class CountGuard:
    """Highest per-instance load allowed, by instance count: a step over the counts seen.

    Pooling never makes an instance weaker, so a load seen to meet the SLO at some count vouches
    for that load at any larger count, not at a smaller one (a pooled queue's wall is nearer at
    fewer instances). Counts below the smallest seen have only the load test, if any, or else
    the loads seen at the smallest count, unexplored.
    """

    counts: FloatArray  # ascending distinct counts
    loads: FloatArray  # the guard at each (non-decreasing)
    below: float  # the guard for counts under the smallest seen

    def at(self, counts: FloatArray) -> FloatArray:
        """The guard for each candidate count."""
        i = np.searchsorted(self.counts, counts, side="right") - 1
        return np.where(i >= 0, self.loads[np.maximum(i, 0)], self.below)

    def raised(self, floor: float) -> CountGuard:
        """This guard, never under ``floor``."""
        return CountGuard(self.counts, np.maximum(self.loads, floor), max(self.below, floor))


def slo_guards(
    cols: WindowArrays, per_inst: FloatArray, knee: Knee | None, policy: Policy, floor_ms: float
) -> tuple[CountGuard | None, CountGuard | None]:
    """(scale-in, scale-out): the highest per-instance load the peak may put on an instance of
    each count, where the SLO must hold.

    The peak is a rare load, and a pooled queue's wall gives little latency warning: past the
    loads seen (at as many instances or fewer) or load-tested to meet the SLO, the guard explores
    at ``SLO_EXPLORE_SHARE`` of the target guard's pace, only while the latency at the highest
    good loads is still flat (``SLO_EXPLORE_ROOM`` of the room left), and no further than a miss
    above them; once the loads seen come near the load test (``VOUCHED_NEAR``) with the latency
    still flat, past the load test's load too. Scaling out may go
    further with a located queueing fit (whose wall is the nearest the data allow): up to where
    it predicts the SLO, at most ``policy.explore`` past those loads. Scale-in does not, so a
    count does not flap as the fit comes and goes with the window.
    """
    vouched = vouched_load(policy)
    limit = policy.latency_slo_ms
    met = cols.p95_ms <= limit
    if not np.count_nonzero(met):
        if vouched is None:
            return None, None
        flat = CountGuard(np.ones(1), np.full(1, vouched), vouched)
        return flat, flat
    counts, ok_max = _cumulative_max(cols.instances[met], per_inst[met])
    room = _room(cols, per_inst, met, limit, floor_ms)
    missed = per_inst[~met]
    bad_min = float(missed.min()) if missed.size else math.inf
    # Only while the latency at the highest loads is still flat (the queue has not begun to
    # rise): a pooled wall comes within a few per cent of where it lifts.
    explore = SLO_EXPLORE_SHARE * policy.explore if room >= SLO_EXPLORE_ROOM else 0.0
    base = ok_max
    if explore > 0 and vouched is not None and float(ok_max[-1]) >= VOUCHED_NEAR * vouched:
        base = np.maximum(ok_max, vouched)  # flat near the load test: it vouches like a seen load
    loads = np.minimum(np.maximum(bad_min, base), base * (1.0 + explore))
    below = vouched if vouched is not None else float(ok_max[0])
    explored = CountGuard(counts, np.maximum(loads, vouched or 0.0), below)
    if knee is None or limit <= knee.a:
        return explored, explored
    guard = max(float(ok_max[-1]), vouched or 0.0)
    at_slo = knee.capacity_rps - knee.b / (limit - knee.a)  # one instance
    return explored, explored.raised(min(at_slo, guard * (1.0 + policy.explore)))


def _cumulative_max(instances: FloatArray, loads: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(distinct counts ascending, the highest load seen at that count or fewer)."""
    order = instances.argsort(kind="stable")
    c, u = instances[order], loads[order]
    starts = np.concatenate(([0], (c[1:] != c[:-1]).nonzero()[0] + 1))
    return c[starts], np.maximum.accumulate(np.maximum.reduceat(u, starts))


def _room(
    cols: WindowArrays, per_inst: FloatArray, met: BoolArray, limit_ms: float, floor_ms: float
) -> float:
    """How far (0..1) the latency seen at the highest loads that met ``limit_ms`` lies below it,
    counted above the latency's floor: exploration shrinks to nothing as it nears the limit."""
    good = per_inst[met]
    near_top = cols.p95_ms[met][good >= 0.95 * float(good.max())]
    floor = min(max(floor_ms, 0.0), 0.9 * limit_ms)
    return max(1.0 - (median(near_top) - floor) / (limit_ms - floor), 0.0)


def max_or_none(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)
