"""Stratus efficiency optimizer: pure math over arrays (numpy), no database, no I/O.

The model
---------
Per deployment, over a recent window of metric buckets (e.g. one per minute: instances C in
service, offered load λ in requests/s, p95 and mean latency, errors), the optimizer fits

    t = a · C^(-α) · (λ/C)^β          i.e.   log t = log a − α·log C + β·log(λ/C)

by least squares in log space (α, β ≥ 0; with β fixed at 0 this is the seed's T(C) = a·C^(-α)).
β is estimated only when the per-instance load λ/C varied in the window; α only when C did.
When only C moved (constant load, so log C and log(λ/C) are collinear) the effect is attributed
to per-instance load (α = 0), the cautious reading for a load increase.
A fit is *trustworthy* with enough points, something identified, residual spread ≤ 0.2 in log
units, R² ≥ 0.5 unless the latencies barely vary, and no significantly negative slope.
Buckets where over 1 % of requests failed (saturation) are left out of the fit.

Efficiency is the seed's E = N/T + D/T + 1/t̄ + 1/Δ with every term divided by its value at the
deployment's baseline (the window's medians) and combined as a weighted mean, so E is
dimensionless and equals 1 at the baseline (see ``efficiency``).

The decision
------------
``decide(window, policy, state)`` forecasts the load level (max of the current value discounted by
z·σ, an EWMA, moved to now along a significant steady fall so a decay is not followed with the
average's lag, and a statistically significant, ramp-shaped linear trend over the start-up
horizon, while its newest buckets still climb: a surge that levelled off is not extrapolated)
and a *peak*: that level raised by ``load_quantile_z`` less ``SCALE_OUT_Z_GAP`` (0.5) σ of the
load's bucket-to-bucket variation (σ widened for the level's own error) and by the load's
significant recent rise over the horizon (capped at the noise margin, so a step overshoots by at
most z·σ). Discounting the current value means a bucket that is merely high by chance does not
get the noise margin twice, while a jump larger than the noise is followed at once. Scale-in must
hold at ``peak_in``: the full z σ noise margin times the recent rise, significant or not, since
undoing a scale-in takes a whole start-up delay. The gap between the two margins is hysteresis in
load, in proportion to its noise: a count that lands between them stays either way.
Predicted p95 is the more pessimistic of the power law and, when it
is located, a queueing fit ``t·C^α = A + B/(μ − λ/C)`` (``fit_knee``) whose capacity μ is the
smallest the data cannot reject (profile likelihood, ≈ 95 %) and, with a
``fallback_target_rps``, that still meets the SLO at twice it: by AWS's recipe that target is half
the per-instance load a load test sustained under the SLO, so the load test vouches for that load
as an observation would. A wall right past the highest load seen is "not located" and leaves the
power law and the guards in charge. For every C in
[min, max] it predicts p95 and calls C feasible when the prediction at the forecast is ≤
SLO·(1 − headroom), the prediction at the peak is ≤ the SLO itself, and the per-instance loads
stay under the utilisation guards below. It picks the cheapest feasible C; candidates costing at
most (1 − cost_weight)·10 % more count as ties, broken by the higher E (cost_weight = 1 is
strictly the cheapest): the cheapest of them whose E is within the fit's residual spread (times
the latency terms' share of E) of the best, since a smaller gain is one the feed's own noise
would hide. Scale-out
is immediate up to ``max_step`` per pass after the scale-out cooldown, and takes the full step
when the SLO is already missed; scale-in waits for the scale-in cooldown (counted from any
scaling), moves at most ``max_step``, and needs the smaller count to meet a target shrunk by
``scale_in_margin`` (hysteresis), so constant load does not flap; on a steady fall the plain
target will do, since the next move is down anyway.

When the fit is not trustworthy the decision falls back to target tracking on invocations per
instance (like SageMaker's default policy) with ``policy.fallback_target_rps`` or, failing that,
half the highest per-instance load observed to meet the SLO; the reason then starts "fallback: fit
not trustworthy (R²=…, distinct C=…)". When the only gap is that nothing varied (one C, steady
load), the fallback holds while the SLO is met, and *probes* one instance fewer when even a steep
response (latency ∝ load^1.5 per instance) would stay under the scale-in threshold, so a steady
deployment can still learn.

Repeating patterns (``seasonal``)
---------------------------------
The window may be of any length, oldest first: the fit and the short-term forecast read its newest 3
hours, the whole of it (e.g. 14 days in 5-minute buckets) feeds a scan for a repeating pattern, kept
in ``State.season`` and redone hourly. On a grid of 5-minute buckets of log load, each candidate
period (calendar periods and the autocorrelation's highest peaks, 15 minutes to a week) replays the
forecast the decision would make, with the pattern learnt only from earlier cycles; it is
significant when it removes ≥ 20 % of the squared error of the level-only forecast and that gain
stands ≥ 4 standard errors above zero over independent blocks, and its swing is at least 15 %. With
a pattern the level comes from it (no EWMA lag after a burst); when it foresees a rise of ≥ 15 %
within one forecast horizon (plus the bucket after it), the forecast is raised to the pattern's
upper band there (and the recent slope is not added on top) and the scale-out is taken in one step.
A bucket's mean hides a batch shorter than the bucket: the window's own per-minute cycles give the
factor from the mean to its second-busiest minute (``within_bucket``, counted from 10 %). Between
rises the level is the pattern's up to the horizon's end (the bucket after it is for a rise's start
only, and would lead a smooth ramp by five minutes); scale-in follows the pattern down without the
step limit. A fixed latency floor (overhead no count removes) that leaves less room under the SLO
than the headroom moves the target halfway between the floor and the SLO; the floor is the power
law's p95 at four times the fewest instances that meet the SLO (not at the maximum count, where a
small spurious count effect would drag it down). A raised target falls back only when the latency
the window shows (its p95s' 10th percentile) has fallen too: the fits' floor wanders with their
fitted shape, the overhead does not.

What the model cannot do, and how the decision stays safe
----------------------------------------------------------
A power law is a straight line in log space; real queues are flat at low utilisation and blow up
near saturation, so the fit underestimates latency beyond the loads it has seen, and buckets at
the knee sit far above the line (more than 4 robust σ off it, they are left out of the fit; over
20 % of them and the fit is not trusted). Guards: (1) headroom below the SLO at the forecast and
the SLO itself at the peak; (2) utilisation guards: no candidate may carry more per-instance load
than (1 + explore) × the highest per-instance load observed to meet the target at the forecast,
with explore shrinking to 0 as the latency seen there nears the limit, nor more than the highest
observed to meet the SLO at the peak at as many instances or fewer (pooling never weakens an
instance, but a pooled queue's wall is nearer at fewer instances and gives little latency
warning, so that guard explores at only 0.4 times that pace, and only while the latency at the
highest loads seen is still flat, past a load-tested load too once loads near it leave the
latency flat: a lone instance, which the load test measured, is at the SLO there; scaling out
may go further with a located queueing fit, whose
wall is the nearest the data allow, up to where it predicts the SLO and at most ``explore`` past
the loads seen; scaling in does not, so a count does not flap as the fit comes and goes), and
none past a load seen to miss it (a load-tested load, twice
``fallback_target_rps``, counts as seen), so the optimizer approaches saturation only as fast as
it observes that it is safe; (3) predictions are scaled so they never fall below the latency the
newest buckets observed. Once a step inwards misses the target, the miss blocks that load until
it ages out of the window, so at constant load such a probe recurs at most once per window
length. Load spikes faster than instance start-up can only be absorbed by spare capacity, which
a cheaper policy by design has less of. Bursts that recur without a rhythm (found by the hourly
scan: more than one every two hours and at least six, each a rise well over the bucket-to-bucket
noise) get that spare capacity: the peak's margin is the height three bursts in four stay under,
when larger than z·σ.

Driving it (a simulator, a notebook, or the periodic pass)
----------------------------------------------------------
    from app.optimizer import Observation, Policy, State, Window, decide
    policy = Policy(latency_slo_ms=300, min_instances=1, max_instances=20)
    state = State(current_instances=4)
    for minute in feed:                      # each: t_s, instances, load_rps, p95_ms, mean_ms
        window = Window(tuple(history), now_s=minute.t_s)  # any length, oldest first
        decision = decide(window, policy, state)
        state = state.after(decision, now_s=minute.t_s)
        store(decision.to_dict())            # JSON: reason, fit, candidate table, inputs
        scale_to(decision.desired_instances)

``fit(observations)`` and ``efficiency(...)`` are usable on their own; ``what_if`` evaluates any
counts; ``training.recommend_instance_count(past_runs)`` applies the same fit to training
(duration vs instance_count). ``bench/autoscale_sim.py`` is a simulator driving ``decide``.
"""

from app.optimizer.decide import decide, what_if
from app.optimizer.efficiency import Baseline, efficiency
from app.optimizer.fit import fit, fit_arrays, fit_knee
from app.optimizer.forecast import forecast_load
from app.optimizer.types import (
    Candidate,
    Decision,
    Fit,
    FitCriteria,
    Inputs,
    Knee,
    Observation,
    Policy,
    State,
    Weights,
    Window,
)

__all__ = [
    "Baseline",
    "Candidate",
    "Decision",
    "Fit",
    "FitCriteria",
    "Inputs",
    "Knee",
    "Observation",
    "Policy",
    "State",
    "Weights",
    "Window",
    "decide",
    "efficiency",
    "fit",
    "fit_arrays",
    "fit_knee",
    "forecast_load",
    "what_if",
]
