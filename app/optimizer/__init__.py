"""Stratus efficiency optimizer: pure math over arrays (numpy), no database, no I/O.

The model
---------
Per deployment, over a recent window of metric buckets (e.g. one per minute: instances C in
service, offered load λ in requests/s, p95 and mean latency, errors), the optimizer fits

    t = a · C^(-α) · (λ/C)^β          i.e.   log t = log a − α·log C + β·log(λ/C)

by least squares in log space (α, β ≥ 0; with β fixed at 0 this is the seed's T(C) = a·C^(-α)).
β is estimated only when the per-instance load λ/C varied in the window; α only when C did.
A fit is *trustworthy* with enough points, something identified, residual spread ≤ 0.2 in log
units, R² ≥ 0.5 unless the latencies barely vary, and no significantly negative slope.
Buckets where over 1 % of requests failed (saturation) are left out of the fit.

Efficiency is the seed's E = N/T + D/T + 1/t̄ + 1/Δ with every term divided by its value at the
deployment's baseline (the window's medians) and combined as a weighted mean, so E is
dimensionless and equals 1 at the baseline (see ``efficiency``).

The decision
------------
``decide(window, policy, state)`` forecasts the load (max of the current value, an EWMA and a
statistically significant linear trend over the start-up horizon), predicts p95 for every C in
[min, max] and calls C feasible when the prediction is ≤ SLO·(1 − headroom) and its per-instance
load stays under the utilisation guard. Among feasible counts it minimises
``cost_weight·C/C_now − (1 − cost_weight)·E(C)`` (cost_weight = 1 is "the cheapest feasible C";
exact ties go to the higher E). Scale-out is immediate up to ``max_step`` per pass (the full step
when the SLO is already missed) after the scale-out cooldown; scale-in waits for the scale-in
cooldown (counted from any scaling) and needs the smaller count to be feasible against a target
shrunk by ``scale_in_margin`` (hysteresis), so constant load does not flap. When the fit is not
trustworthy the decision falls back to target tracking on invocations per instance (like
SageMaker's default policy) with ``policy.fallback_target_rps`` or, failing that, half the highest
per-instance load observed to meet the SLO, and the reason starts "fallback: fit not trustworthy".
When the only gap is that nothing varied yet (one C, steady load) and latency is well under target,
it *probes* one instance fewer instead, so a steady deployment can still learn.

What the model cannot do, and how the decision stays safe
----------------------------------------------------------
A power law is a straight line in log space; real queues are flat at low utilisation and blow up
near saturation, so the fit underestimates latency beyond the loads it has seen. Three guards:
(1) headroom below the SLO; (2) a utilisation guard: no candidate may carry more per-instance load
than ``(1 + explore)`` × the highest per-instance load observed to meet the target (and none past
a load seen to miss it), so the optimizer creeps towards saturation only as it observes it is
safe; (3) predictions are scaled so they never fall below the latency the newest buckets observed.
Load spikes faster than instance start-up can only be absorbed by spare capacity, which a cheaper
policy by design has less of.

Driving it (a simulator, a notebook, or the periodic pass)
----------------------------------------------------------
    from app.optimizer import Observation, Policy, State, Window, decide
    policy = Policy(latency_slo_ms=300, min_instances=1, max_instances=20)
    state = State(current_instances=4)
    for minute in feed:                      # each: t_s, instances, load_rps, p95_ms, mean_ms
        window = Window(tuple(last_180_observations), now_s=minute.t_s)
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
from app.optimizer.fit import fit, fit_arrays
from app.optimizer.forecast import forecast_load
from app.optimizer.types import (
    Candidate,
    Decision,
    Fit,
    FitCriteria,
    Inputs,
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
    "Observation",
    "Policy",
    "State",
    "Weights",
    "Window",
    "decide",
    "efficiency",
    "fit",
    "fit_arrays",
    "forecast_load",
    "what_if",
]
