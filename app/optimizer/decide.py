"""One optimizer pass for one deployment: window, policy and state in, a Decision out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from app.optimizer.bounds import (
    FALLBACK_SAFETY,
    RECENT_POINTS,
    CountGuard,
    fit_window,
    knee_for,
    latency_target,
    load_guard,
    max_or_none,
    policy_counts,
    predicted,
    residual_correction,
    slo_guards,
    vouched_load,
)
from app.optimizer.efficiency import Baseline, efficiency
from app.optimizer.forecast import (
    AUTO,
    Auto,
    fall_slope,
    fit_line,
    forecast_load,
    load_sigma,
)
from app.optimizer.foresight import SEASON_MIN_GAIN, foresight, recent, season_for, seen_ahead
from app.optimizer.seasonal import Rise
from app.optimizer.types import (
    Action,
    Candidate,
    Decision,
    Fit,
    FloatArray,
    Inputs,
    Knee,
    Policy,
    State,
    Window,
    WindowArrays,
    median,
)

# Candidates costing up to (1 - cost_weight) × this fraction more than the cheapest feasible count
# count as ties, which E then breaks: cost_weight 1 is strictly the cheapest.
TIE_BAND = 0.1
# A probe assumes latency may grow as (per-instance load)^1.5 (steeper than most services short of
# saturation) and only goes ahead if even that stays under the scale-in threshold.
PROBE_ELASTICITY = 1.5
# The level forecast carries its own error: an EWMA over about this many buckets; the peak's σ is
# widened by √(1 + 1/n) to cover it.
LEVEL_BUCKETS = 14.0
# Scale-in commits the deployment for the forecast horizon (undoing it takes a start-up delay), so
# the smaller count must hold through the noise margin and through the load's
# recent rise, measured over this span (not only when the rise is significant enough to forecast).
GROWTH_SPAN_S = 1800.0
# Scale-out provisions for the rise only when its slope is this many standard errors above zero:
# on noisy traffic an insignificant slope would turn noise into capacity.
GROWTH_T_STAT = 3.0
# Scale-in may shed up to this share of the instances at once (or max_step, if more): a fixed
# step of two would hold a burst's capacity for an hour after the burst.
SCALE_IN_SHARE = 0.5
# Hysteresis in load, in proportion to its noise: a count is added when the peak at
# ``load_quantile_z`` less this many σ would break the SLO, and given back only when the smaller
# count holds the peak at the full z. Both ends stay in the noise's far tail (2.5σ and 3σ by
# default), and a count that lands between them stays: on noisy load the count no longer
# follows every draw of the noise estimate with a whole instance.
SCALE_OUT_Z_GAP = 0.5
# The lowest latency the window shows, robust to a few lucky buckets: this quantile of its p95s.
SEEN_LOW_QUANTILE = 0.1
# Relative tolerance of the load guards' comparisons (floating-point rounding, not a margin).
GUARD_RTOL = 1.0 + 1e-9


@dataclass(frozen=True)
class _Context:
    """Quantities every mode needs, computed once per pass."""

    cols: WindowArrays
    load_now: float
    forecast: float  # expected load to provision for: the latency target must hold here
    peak: float  # forecast raised by z·σ of bucket-to-bucket variation: the SLO must hold here
    peak_in: float  # what a smaller count must carry: the noise margin times any recent rise
    observed_p95: float  # newest observation
    recent_p95: float  # median of the newest few, robust to one noisy bucket
    target_ms: float  # p95 the forecast must meet: the SLO less the headroom
    in_ms: float  # p95 a smaller count must meet to scale in (hysteresis)
    knee: Knee | None  # queueing fit, when trusted
    corr: float  # residual correction: predictions never below what the newest buckets saw
    # The p95 predicted for each of ``policy_counts`` at the forecast, the peak and peak_in
    # (``what_if``, which moves the forecast, predicts its own counts anew).
    p95: FloatArray
    p95_peak: FloatArray
    p95_peak_in: FloatArray
    rise: Rise | None  # a repeating pattern's rise the forecast was raised for
    periodic: bool  # a significant repeating pattern: its swings are not noise to damp
    guard: float | None  # highest per-instance forecast load allowed for a candidate
    slo_guard: CountGuard | None  # highest per-instance peak load allowed, by count
    slo_guard_in: CountGuard | None  # the same without the queueing fit's extension, for scale-in
    slo_ok_max: float | None  # highest per-instance load observed to meet the SLO itself
    baseline: Baseline
    mean_ratio: float  # mean / p95 in the window, to predict t̄ from a predicted p95


def decide(window: Window, policy: Policy, state: State) -> Decision:
    """Choose the instance count for the next period and say why in one sentence.

    ``window`` may be of any length, oldest first: its newest ``RECENT_SPAN_S`` feed the fit
    and the short-term forecast, all of it the search for a repeating pattern (reused from
    ``state.season`` while fresh).
    """
    now = window.time_s
    season = season_for(window.arrays, policy, state, now)
    cols = recent(window.arrays)
    f = fit_window(cols, policy) if cols.n else None
    ahead = seen_ahead(season, cols, policy, now)
    periodic = season is not None and season.pattern is not None
    burst = season.burst if season is not None and not periodic else 0.0
    ctx = (
        _context(cols, policy, f, ahead, periodic, burst, state.latency_target_ms)
        if cols.n and f is not None
        else None
    )
    decision = _decide(window, policy, state, f, ctx)
    note = foresight(ctx.rise) if ctx is not None and ctx.rise is not None else ""
    return replace(decision, reason=note + decision.reason, season=season)


def _decide(
    window: Window, policy: Policy, state: State, f: Fit | None, ctx: _Context | None
) -> Decision:
    now = window.time_s
    cur = state.current_instances
    lo, hi = policy.min_instances, policy.max_instances
    if ctx is None or f is None:
        return _no_data(window, policy, state)

    corr = ctx.corr
    table = _evaluate(ctx, policy, policy_counts(policy), ctx.p95, ctx.p95_peak)
    candidates = _rows(table, policy)
    inputs = _inputs(window, policy, state, ctx, corr)

    if not lo <= cur <= hi:
        target = min(max(cur, lo), hi)
        act: Action = "scale_out" if target > cur else "scale_in"
        reason = f"Move {cur} → {target}: the count lies outside the policy's [{lo}, {hi}]."
        return Decision(
            target,
            cur,
            target,
            act,
            "model" if f.trustworthy else "fallback",
            reason,
            f,
            candidates,
            inputs,
        )

    if f.trustworthy:
        return _model_decision(f, ctx, policy, state, now, table, candidates, inputs)
    steady = not f.identified and len(f.problems) == 1  # precise data, but nothing varied
    if steady and _probe_allowed(ctx, policy, state, now):
        target = cur - 1
        reason = (
            f"Probe {cur} → {target}: the fit cannot yet tell how latency depends on load "
            f"({f.quality()}), and p95 {ctx.recent_p95:.0f} ms is well under the "
            f"{policy.latency_target_ms:.0f} ms target, so one instance fewer is tried to learn."
        )
        return Decision(target, cur, target, "scale_in", "probe", reason, f, candidates, inputs)
    if steady and ctx.recent_p95 <= policy.latency_slo_ms:
        # A deployment that sat at one count under steady load is healthy, not broken: target
        # tracking with a derived, halved target would double it for nothing.
        reason = (
            f"fallback: fit not trustworthy ({f.quality()}); nothing varied in the window and "
            f"p95 {ctx.recent_p95:.0f} ms meets the {policy.latency_slo_ms:.0f} ms SLO, "
            f"so holding at {cur}."
        )
        return Decision(cur, cur, cur, "hold", "fallback", reason, f, candidates, inputs)
    return _fallback_decision(f, ctx, policy, state, now, candidates, inputs)


def _no_data(window: Window, policy: Policy, state: State) -> Decision:
    """Nothing to fit: hold, or move the count into the policy's bounds."""
    cur = state.current_instances
    lo, hi = policy.min_instances, policy.max_instances
    target = min(max(cur, lo), hi)
    reason = (
        f"Hold at {cur}: no usable observations in the window."
        if target == cur
        else f"Move {cur} → {target}: the count lies outside [{lo}, {hi}] and no data to fit."
    )
    action: Action = "hold" if target == cur else ("scale_out" if target > cur else "scale_in")
    inputs = _inputs(window, policy, state, None, 1.0)
    return Decision(target, cur, target, action, "no_data", reason, None, (), inputs)


def what_if(
    window: Window, policy: Policy, instances: Sequence[int], load_rps: float | None = None
) -> tuple[Candidate, ...]:
    """Candidate rows for arbitrary counts at the window's forecast load, or at ``load_rps``."""
    cols = recent(window.arrays)
    if cols.n == 0:
        return ()
    f = fit_window(cols, policy)
    ctx = _context(cols, policy, f)
    if load_rps is not None:  # keep the window's noise: the peak scales with the load
        scale = load_rps / ctx.forecast if ctx.forecast > 0 else 1.0
        ctx = replace(
            ctx, forecast=load_rps, peak=ctx.peak * scale if ctx.forecast > 0 else load_rps
        )
    counts = np.asarray(sorted({max(int(c), 1) for c in instances}), dtype=np.float64)
    p95, p95_peak = predicted(f, ctx.knee, ctx.corr, counts, (ctx.forecast, ctx.peak))
    return _rows(_evaluate(ctx, policy, counts, p95, p95_peak), policy)


def _context(
    cols: WindowArrays,
    policy: Policy,
    f: Fit,
    ahead: Rise | None = None,
    periodic: bool = False,
    burst: float = 0.0,
    previous_target_ms: float | None = None,
) -> _Context:
    per_inst = cols.load_rps / cols.instances
    met_slo = cols.p95_ms <= policy.latency_slo_ms
    fall = fall_slope(cols.t_s, cols.load_rps)
    forecast, ahead, peak, peak_in = _loads(cols, policy, ahead, periodic, burst, fall)
    knee = knee_for(f, cols, policy)
    corr = residual_correction(f, knee, cols)
    seen = cols.p95_ms[np.isfinite(cols.p95_ms) & ~cols.saturated]
    k = int(SEEN_LOW_QUANTILE * (seen.size - 1))
    seen_low = float(np.partition(seen, k)[k]) if seen.size else 0.0  # a quantile, no sort
    loads = (forecast, peak, peak_in)
    p95, p95_peak, p95_peak_in = predicted(f, knee, corr, policy_counts(policy), loads)
    target_ms, floor_ms = latency_target(
        f, knee, corr, policy, forecast, previous_target_ms, seen_low, p95
    )
    # Hysteresis shrinks the target; over a floor that leaves little room, only that room. It
    # keeps a count from flapping under a steady load: on a steady fall the next move is down
    # anyway, and holding the margin would only keep the decay's capacity.
    in_ms = target_ms * (1.0 - policy.scale_in_margin)
    if target_ms > policy.latency_target_ms:
        in_ms = target_ms - policy.scale_in_margin * (target_ms - floor_ms)
    if fall is not None:
        in_ms = target_ms
    guards = slo_guards(cols, per_inst, knee, policy, floor_ms)
    ratios = cols.mean_ms / cols.p95_ms
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    return _Context(
        cols=cols,
        load_now=float(cols.load_rps[-1]),
        forecast=forecast,
        peak=peak,
        peak_in=peak_in,
        observed_p95=float(cols.p95_ms[-1]),
        recent_p95=float(median(cols.p95_ms[-RECENT_POINTS:])),
        target_ms=target_ms,
        in_ms=in_ms,
        knee=knee,
        corr=corr,
        p95=p95,
        p95_peak=p95_peak,
        p95_peak_in=p95_peak_in,
        rise=ahead,
        periodic=periodic,
        guard=max_or_none(
            load_guard(cols, per_inst, target_ms, policy.explore, floor_ms), vouched_load(policy)
        ),
        slo_guard=guards[1],
        slo_guard_in=guards[0],
        slo_ok_max=float(per_inst[met_slo].max()) if np.count_nonzero(met_slo) else None,
        baseline=Baseline.from_window(cols),
        mean_ratio=float(median(ratios)) if ratios.size else math.nan,
    )


def _loads(
    cols: WindowArrays,
    policy: Policy,
    ahead: Rise | None,
    periodic: bool,
    burst: float,
    fall: float | None | Auto = AUTO,
) -> tuple[float, Rise | None, float, float]:
    """(forecast, the pattern's rise it was raised for, peak, peak_in): the loads to provision
    for over the start-up horizon. ``fall``: the slope of a steady fall (``fall_slope``), when
    already measured."""
    z = policy.load_quantile_z
    sigma = load_sigma(cols.t_s, cols.load_rps)
    level = ahead.expected_rps if ahead is not None and periodic else None
    forecast = forecast_load(
        cols.t_s,
        cols.load_rps,
        policy.forecast_horizon_s,
        sigma=sigma,
        z=z,
        level=level,
        fall=fall,
    )
    if ahead is not None and ahead.gain >= SEASON_MIN_GAIN:
        # Capacity must be in service when the pattern's rise comes. The pattern's level may
        # already hold it (the look-ahead's first bucket is the rise's): the rise is still the
        # reason, and the decision says so.
        forecast = max(forecast, ahead.peak_rps)
    else:
        ahead = None
    sigma *= math.sqrt(1.0 + 1.0 / LEVEL_BUCKETS)
    # Bursts that recur (and that no pattern foresees) are no noise: the peak keeps spare
    # capacity for the height three in four of them stay under, as a fixed target would.
    margin_in = max(z * sigma, burst)
    margin_out = max((z - SCALE_OUT_Z_GAP) * sigma, burst)
    # Capacity ordered now serves only after the start-up delay: provision for the recent rise
    # over that horizon too, capped at the noise margin so that a step (whose slope is not a
    # trend) overshoots by at most z·σ.
    cap = math.exp(z * sigma)
    rise, trend = _growth(cols, policy)
    if level is not None:
        trend = 1.0  # the pattern's look-ahead already holds the rise
    peak = forecast * math.exp(margin_out) * min(trend, cap)
    peak_in = forecast * math.exp(margin_in) * min(rise, cap)
    return forecast, ahead, peak, peak_in


def _growth(cols: WindowArrays, policy: Policy) -> tuple[float, float]:
    """Factors ≥ 1: the rise of log load over the horizon at its recent least-squares slope, and
    the same counting only a slope significantly (``GROWTH_T_STAT`` standard errors) above 0."""
    recent = (cols.t_s >= cols.t_s[-1] - GROWTH_SPAN_S) & (cols.load_rps > 0)
    if np.count_nonzero(recent) < 4:
        return 1.0, 1.0
    line = fit_line(cols.t_s[recent], np.log(cols.load_rps[recent]))
    if line is None or line.slope <= 0:
        return 1.0, 1.0
    rise = math.exp(line.slope * policy.forecast_horizon_s)
    return rise, rise if line.slope > GROWTH_T_STAT * line.se else 1.0


class _Table(NamedTuple):
    """The candidate table by column: what each count is predicted to give."""

    counts: FloatArray
    per_inst: FloatArray
    p95: FloatArray
    mean: FloatArray
    eff: FloatArray
    feasible: FloatArray  # 1/0


def _rows(table: _Table, policy: Policy) -> tuple[Candidate, ...]:
    """The table's rows, as a decision reports them."""
    counts, per_inst, p95, mean, eff, feasible = table
    price = policy.price_per_instance_hour
    # Python floats once per column (``tolist``) rather than a numpy scalar per cell.
    columns = (counts.astype(np.intp), per_inst, p95, mean, eff, counts * price, feasible > 0)
    return tuple(map(Candidate._make, zip(*(col.tolist() for col in columns), strict=True)))


def _evaluate(
    ctx: _Context, policy: Policy, counts: FloatArray, p95: FloatArray, p95_peak: FloatArray
) -> _Table:
    """The table for ``counts``, given their predicted p95 at the forecast and at the peak."""
    mean = p95 * ctx.mean_ratio if math.isfinite(ctx.mean_ratio) else p95
    eff = efficiency(
        task_rate=np.full_like(counts, ctx.forecast),
        mean_ms=mean,
        p95_ms=p95,
        baseline=ctx.baseline,
        weights=policy.weights,
    )
    per_inst = ctx.forecast / counts
    feasible = _feasible(ctx, policy, counts, (p95, p95_peak), ctx.peak, ctx.slo_guard)
    return _Table(counts, per_inst, p95, mean, eff, feasible)


def _feasible(
    ctx: _Context,
    policy: Policy,
    counts: FloatArray,
    p95s: tuple[FloatArray, FloatArray],
    peak: float,
    slo_guard: CountGuard | None,
) -> FloatArray:
    """1/0 per count: the forecast's p95 meets the target, the ``peak`` load's the SLO, and
    the per-instance loads stay under the guards. ``p95s``: the p95 predicted at the forecast
    and at the peak."""
    p95, peak_p95 = p95s
    feasible = (p95 <= ctx.target_ms) & (peak_p95 <= policy.latency_slo_ms)
    # A guard is often a load seen at that very count: rounding in the forecast's mean must
    # not make the count it was seen at infeasible.
    if ctx.guard is not None:
        feasible &= ctx.forecast / counts <= ctx.guard * GUARD_RTOL
    if slo_guard is not None:
        feasible &= peak / counts <= slo_guard.at(counts) * GUARD_RTOL
    return feasible.astype(np.float64)


def _choose(
    counts: FloatArray, eff: FloatArray, mask: FloatArray, band: float, noise: float = 0.0
) -> int | None:
    """Among masked counts costing at most ``band`` more than the cheapest, the cheapest whose
    E is within ``noise`` (relative) of the best E there: a dearer count is only paid for when
    every cheaper one is measurably worse.

    With E non-decreasing in the count (the model's latency never rises with C), the choice is
    monotone: a looser SLO, which only adds cheaper counts, never picks a dearer one.
    """
    idx = (mask > 0).nonzero()[0]
    if idx.size == 0:
        return None
    # Counts ascend and cost is proportional to the count, so the first qualifying one is cheapest.
    ties = idx[counts[idx] <= counts[idx[0]] * (1.0 + band) + 1e-9]
    best = float(eff[ties].max())
    good = ties[eff[ties] * (1.0 + noise) >= best]
    return int(counts[good[0]])


def _e_noise(f: Fit, policy: Policy) -> float:
    """How far (relative) below the best E a cheaper count may fall and still count as as good:
    the fit's log-latency scatter times the latency terms' share of a candidate's E (which has
    no data-rate term). A smaller gain is within the noise of the feed the fit came from, so it
    is not worth paying for."""
    w = policy.weights
    latency = w.mean_latency + w.p95_latency
    total = w.task_rate + latency
    if not (total > 0 and math.isfinite(f.residual_std)):
        return 0.0
    return latency / total * f.residual_std


def _model_decision(
    f: Fit,
    ctx: _Context,
    policy: Policy,
    state: State,
    now: float,
    table: _Table,
    candidates: tuple[Candidate, ...],
    inputs: Inputs,
) -> Decision:
    cur = state.current_instances
    counts, p95, eff, feasible = table.counts, table.p95, table.eff, table.feasible
    in_ms = ctx.in_ms
    band = (1.0 - policy.cost_weight) * TIE_BAND
    noise = _e_noise(f, policy)
    ideal = _choose(counts, eff, feasible, band, noise)
    cheapest = _choose(counts, eff, feasible, 0.0)
    at_cur = float(p95[cur - policy.min_instances])
    urgent = ctx.observed_p95 > policy.latency_slo_ms or at_cur > policy.latency_slo_ms
    want = ideal if ideal is not None else policy.max_instances
    # Scale-in is weighed only when no scale-out is wanted: ``_act`` looks no further.
    ideal_in = _ideal_in(ctx, policy, table, (band, noise)) if want <= cur else None
    desired, action, blocked = _act(want, ideal_in, cur, urgent, policy, state, now, _free(ctx))

    why = _why(ideal, cheapest, p95, ctx, policy, (band, noise))
    load = f"{ctx.forecast:.0f} req/s"
    if action == "scale_out":
        reason = f"Scale out {cur} → {desired}: {why}{_step_note(want, desired, urgent)}."
    elif action == "scale_in":
        pred_in = float(p95[desired - policy.min_instances])
        reason = (
            f"Scale in {cur} → {desired}: {desired} predicts p95 {pred_in:.0f} ms at a forecast "
            f"{load}, under the {in_ms:.0f} ms scale-in threshold"
            f"{_step_note(ideal_in or desired, desired, False)}."
        )
    elif blocked:
        reason = f"Hold at {cur}: {blocked}."
    elif want < cur:
        below = float(p95[cur - 1 - policy.min_instances])
        reason = (
            f"Hold at {cur}: {cur - 1} would predict p95 {below:.0f} ms at a forecast {load}, "
            f"not under the {in_ms:.0f} ms scale-in threshold, or past a load guard."
        )
    else:
        reason = f"Hold at {cur}: {why}."
    return Decision(
        desired, cur, want, action, "model", reason, f, candidates, inputs, knee=ctx.knee
    )


def _ideal_in(
    ctx: _Context, policy: Policy, table: _Table, band_noise: tuple[float, float]
) -> int | None:
    """The count to scale in to: chosen as the ideal is, among the counts that also hold the
    full-z peak and meet the scale-in threshold. Scale-in leaves out the queueing fit's extension
    of the SLO guard: the fit comes and goes with the window, and a count must not flap with it.
    """
    counts, p95 = table.counts, table.p95
    p95s = (p95, ctx.p95_peak_in)
    feasible_in = _feasible(ctx, policy, counts, p95s, ctx.peak_in, ctx.slo_guard_in)
    mask = table.feasible * feasible_in * (p95 <= ctx.in_ms)
    return _choose(counts, table.eff, mask, *band_noise)


def _why(
    ideal: int | None,
    cheapest: int | None,
    p95: FloatArray,
    ctx: _Context,
    policy: Policy,
    band_noise: tuple[float, float],
) -> str:
    """Why the model wants the count it wants, in words."""
    target_ms, load = ctx.target_ms, f"{ctx.forecast:.0f} req/s"
    if ideal is None:
        return f"no count meets the {target_ms:.0f} ms target at a forecast {load}"
    if cheapest is not None and cheapest != ideal:
        band, noise = band_noise
        return (
            f"{ideal} is the cheapest count whose E is within {noise:.1%} (the fit's noise) "
            f"of the best within {band:.0%} of the cheapest cost at cost weight "
            f"{policy.cost_weight:g} (the cheapest meeting {target_ms:.0f} ms at {load} is "
            f"{cheapest})"
        )
    pred = float(p95[ideal - policy.min_instances])
    return (
        f"{ideal} is the cheapest count predicted to keep p95 under {target_ms:.0f} ms "
        f"at a forecast {load} ({pred:.0f} ms)"
    )


def _fallback_decision(
    f: Fit,
    ctx: _Context,
    policy: Policy,
    state: State,
    now: float,
    candidates: tuple[Candidate, ...],
    inputs: Inputs,
) -> Decision:
    cur = state.current_instances
    head = f"fallback: fit not trustworthy ({f.quality()})"
    target = policy.fallback_target_rps
    if target is None and ctx.slo_ok_max is not None:
        target = FALLBACK_SAFETY * ctx.slo_ok_max
    if target is None:
        reason = f"{head}; no target-tracking target is known yet, so holding at {cur}."
        return Decision(cur, cur, cur, "hold", "fallback", reason, f, candidates, inputs)
    lo, hi = policy.min_instances, policy.max_instances
    want = min(max(math.ceil(ctx.forecast / target - 1e-9), lo), hi)
    want_in = min(max(math.ceil(ctx.forecast / (target * (1 - policy.scale_in_margin))), lo), hi)
    if ctx.observed_p95 > policy.latency_slo_ms:
        want_in = cur  # never shed capacity while the SLO is being missed
    urgent = ctx.observed_p95 > policy.latency_slo_ms
    desired, action, blocked = _act(want, want_in, cur, urgent, policy, state, now, _free(ctx))
    rule = f"target tracking at {target:.1f} req/s per instance wants {want} for {ctx.forecast:.0f}"
    if action == "hold":
        tail = f"{blocked}, holding at {cur}" if blocked else f"holding at {cur}"
        reason = f"{head}; {rule} req/s, {tail}."
    else:
        verb = "scale out" if action == "scale_out" else "scale in"
        reason = f"{head}; {rule} req/s, {verb} {cur} → {desired}."
    return Decision(desired, cur, want, action, "fallback", reason, f, candidates, inputs, target)


def _free(ctx: _Context) -> tuple[bool, bool]:
    """Whether scale-out and scale-in may skip the step limit: a foreseen rise must be met in
    one move, and a pattern's known swings are not the noise the limit damps."""
    return ctx.rise is not None, ctx.periodic


def _act(
    want: int,
    want_in: int | None,
    cur: int,
    urgent: bool,
    policy: Policy,
    state: State,
    now: float,
    free: tuple[bool, bool] = (False, False),
) -> tuple[int, Action, str]:
    """Apply cooldowns, hysteresis and the step limit; returns (count, action, why held)."""
    if want > cur:
        wait = _remaining(policy.scale_out_cooldown_s, now, state.last_scale_out_s)
        if wait > 0 and not urgent:
            return cur, "hold", f"scale-out to {want} waits {wait:.0f} s of cooldown"
        # The step limit guards against flapping; when the SLO is already missed it would only
        # trade violation minutes for nothing, so the full step is taken.
        full = urgent or free[0]
        step = want - cur if full else min(want - cur, policy.max_step)
        return cur + step, "scale_out", ""
    if want_in is not None and want_in < cur:
        last = max(state.last_scale_in_s or -math.inf, state.last_scale_out_s or -math.inf)
        wait = _remaining(policy.scale_in_cooldown_s, now, last if math.isfinite(last) else None)
        if wait > 0:
            return cur, "hold", f"scale-in to {want_in} waits {wait:.0f} s of cooldown"
        step = max(policy.max_step, math.ceil(SCALE_IN_SHARE * cur))
        return (want_in if free[1] else max(want_in, cur - step)), "scale_in", ""
    return cur, "hold", ""


def _remaining(cooldown_s: float, now: float, since: float | None) -> float:
    return 0.0 if since is None else max(0.0, cooldown_s - (now - since))


def _step_note(want: int, desired: int, urgent: bool) -> str:
    if desired == want:
        return " (SLO already missed: full step)" if urgent else ""
    return f" (max step; heading for {want})"


def _probe_allowed(ctx: _Context, policy: Policy, state: State, now: float) -> bool:
    """Whether to learn by trying one instance fewer when nothing varied in the window."""
    cur = state.current_instances
    if cur <= policy.min_instances:
        return False
    steeper = (cur / (cur - 1)) ** PROBE_ELASTICITY
    if ctx.recent_p95 * steeper > policy.latency_target_ms * (1.0 - policy.scale_in_margin):
        return False
    # The target's guard (which explores past the loads seen) bounds a probe; the SLO's guard
    # (which does not) would forbid ever learning past them.
    if ctx.guard is None or ctx.forecast / (cur - 1) > ctx.guard:
        return False
    last = max(state.last_scale_in_s or -math.inf, state.last_scale_out_s or -math.inf)
    since = last if math.isfinite(last) else None
    return _remaining(policy.scale_in_cooldown_s, now, since) == 0.0


def _inputs(
    window: Window, policy: Policy, state: State, ctx: _Context | None, corr: float
) -> Inputs:
    summary = window.summary()
    return Inputs(
        now_s=window.time_s,
        current_instances=state.current_instances,
        n_observations=summary["n_observations"],
        window_start_s=summary["start_s"],
        window_end_s=summary["end_s"],
        load_now_rps=ctx.load_now if ctx else None,
        load_forecast_rps=ctx.forecast if ctx else None,
        load_peak_rps=ctx.peak if ctx else None,
        observed_p95_ms=ctx.observed_p95 if ctx else None,
        latency_target_ms=ctx.target_ms if ctx else policy.latency_target_ms,
        utilisation_guard_rps=ctx.guard if ctx else None,
        residual_correction=corr,
    )
