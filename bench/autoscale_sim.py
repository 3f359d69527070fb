"""Autoscaling benchmark: the Stratus optimizer against SageMaker-style target tracking.

A seeded, discrete-time (one-minute) simulation of an endpoint behind a random load balancer.
Each instance is an M/M/k queue (k workers, exponential service) plus a fixed overhead; its
parameters are hidden from every policy, which only sees a CloudWatch-like per-minute feed:
invocations (Poisson-noisy), p95 and mean latency (log-normal estimation noise), errors. New
instances serve traffic only after a start-up delay and are billed from launch.

Policies, all on the same traces, noise and latency model:
- recipe: target tracking on invocations per instance with AWS's documented target (the highest
  per-instance rate meeting the SLO in a load test of the simulated instance × 0.5), AWS alarm
  semantics (scale out after 3 one-minute points above target, scale in after 15 points below
  90 % of it), scale-out cooldown 60 s, scale-in cooldown 300 s;
- oracle: the same rule with the fixed target that, swept per trace, gives the fewest
  instance-hours with no more SLO-violation minutes than the recipe (no user has this);
- stratus: ``app.optimizer.decide`` every minute with one policy on all traces: the defaults, the
  SLO, instance bounds, and as its fallback target the recipe's target (what the user's load test
  gave); it never reads the service's parameters.

Run: ``.venv/bin/python bench/autoscale_sim.py``. The last line is one JSON object.

``--diagnose`` adds one more run per trace: Stratus with its decision rule and default margins
unchanged but its fitted latency model replaced by the simulator's true curve (and the
utilisation guards, which only stand in for model uncertainty, off). The gap between that run and
the oracle is what the policy's margins cost; the gap between it and the normal run is what
learning the curve from the feed costs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammaln

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.optimizer import Observation, Policy, State, Window, decide  # noqa: E402
from app.optimizer import decide as _decide_function  # noqa: E402
from app.optimizer.types import FloatArray  # noqa: E402

SEED = 20240611
SLO_MS = 300.0
START_UP_MIN = 4
MAX_INSTANCES = 100
P95_NOISE = 0.05  # log-normal sd of a one-minute p95 estimate
WINDOW_MIN = 180  # observations the optimizer is handed each pass
ORACLE_STEPS = 71


# --- the hidden service ---


@dataclass(frozen=True)
class Service:
    """One instance: an M/M/k queue plus fixed overhead; policies never read these fields."""

    workers: int = 4
    service_ms: float = 50.0
    overhead_ms: float = 30.0
    timeout_ms: float = 30_000.0
    grid: FloatArray = field(init=False, repr=False)
    p95_grid: FloatArray = field(init=False, repr=False)
    mean_grid: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rho = np.linspace(0.0, 0.995, 800)
        p95 = np.array([self._p95_exact(r) for r in rho])
        mean = np.array([self._mean_exact(r) for r in rho])
        object.__setattr__(self, "grid", rho)
        object.__setattr__(self, "p95_grid", p95)
        object.__setattr__(self, "mean_grid", mean)

    @property
    def capacity_rps(self) -> float:
        """Requests/s one instance completes at full utilisation."""
        return self.workers * 1000.0 / self.service_ms

    def _erlang_c(self, rho: float) -> float:
        k = self.workers
        a = rho * k
        if a == 0:
            return 0.0
        i = np.arange(k)
        head = np.exp(i * math.log(a) - gammaln(i + 1)).sum()
        tail = math.exp(k * math.log(a) - gammaln(k + 1)) / (1.0 - rho)
        return float(tail / (head + tail))

    def _p95_exact(self, rho: float) -> float:
        mu = 1000.0 / self.service_ms
        theta = self.workers * mu * (1.0 - rho)  # decay rate of the waiting time
        pw = self._erlang_c(rho)

        def survival(t: float) -> float:
            if abs(theta - mu) < 1e-9:
                both = math.exp(-mu * t) * (1 + mu * t)
            else:
                both = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
            return (1 - pw) * math.exp(-mu * t) + pw * both - 0.05

        return self.overhead_ms + 1000.0 * float(brentq(survival, 0.0, 1e4))

    def _mean_exact(self, rho: float) -> float:
        mu = 1000.0 / self.service_ms
        wait = self._erlang_c(rho) / (self.workers * mu * (1.0 - rho))
        return self.overhead_ms + 1000.0 * (wait + 1.0 / mu)

    def latency(self, per_instance_rps: float) -> tuple[float, float, float]:
        """(p95 ms, mean ms, failed fraction) at a steady per-instance load."""
        rho = per_instance_rps / self.capacity_rps
        if rho >= self.grid[-1]:
            # Past saturation the queue only grows: requests time out, the excess fails.
            return self.timeout_ms, self.timeout_ms, max(0.0, 1.0 - self.grid[-1] / rho)
        p95 = float(np.interp(rho, self.grid, self.p95_grid))
        return p95, float(np.interp(rho, self.grid, self.mean_grid)), 0.0

    def load_test(self, slo_ms: float) -> float:
        """Highest per-instance requests/s whose steady p95 meets the SLO."""
        ok = self.p95_grid <= slo_ms
        return float(self.grid[ok].max() * self.capacity_rps)


# --- traces ---


def traces(rng: np.random.Generator) -> dict[str, FloatArray]:
    """Offered load in requests/s per minute: diurnal, step, spike, noisy."""
    day = np.arange(1440)
    diurnal = 150 + 1150 * (0.5 - 0.5 * np.cos(2 * np.pi * (day - 240) / 1440)) ** 1.5
    diurnal = diurnal * np.exp(rng.normal(0, 0.03, day.size))

    six = np.arange(360)
    step = np.where((six >= 120) & (six < 240), 900.0, 300.0) * np.exp(rng.normal(0, 0.03, 360))

    spike = np.full(360, 400.0)
    for start, length, factor in ((60, 20, 2.0), (150, 10, 3.0), (240, 5, 4.0)):
        spike[start : start + length] *= factor
    spike = spike * np.exp(rng.normal(0, 0.03, 360))

    half = np.arange(720)
    level = np.cumsum(rng.normal(0, 0.02, half.size))
    level = level - np.linspace(0, level[-1], half.size)  # drift-free random walk
    noisy = 600 * np.exp(level) * np.exp(rng.normal(0, 0.2, half.size))
    return {"diurnal": diurnal, "step": step, "spike": spike, "noisy": noisy}


# --- policies ---


Controller = Callable[[int, Observation, int], int]


class TargetTracking:
    """Application Auto Scaling target tracking on InvocationsPerInstance, AWS defaults."""

    def __init__(self, target_rps: float, out_points: int = 3, in_points: int = 15) -> None:
        self.target = target_rps
        self.out_points, self.in_points = out_points, in_points
        self.history: deque[float] = deque(maxlen=max(out_points, in_points))
        self.last_out = -math.inf
        self.last_in = -math.inf

    def __call__(self, minute: int, obs: Observation, desired: int) -> int:
        metric = obs.load_rps / obs.instances
        self.history.append(metric)
        now = minute * 60.0
        recent = list(self.history)
        new = math.ceil(obs.instances * metric / self.target)
        high = len(recent) >= self.out_points and min(recent[-self.out_points :]) > self.target
        low = len(recent) >= self.in_points and max(recent) < 0.9 * self.target
        if high and now - self.last_out >= 60 and new > desired:
            self.last_out = now
            return new
        if low and now - self.last_in >= 300 and new < desired:
            self.last_in = now
            return new
        return desired


class Stratus:
    """The optimizer driven exactly as the periodic pass would drive it."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.window: deque[Observation] = deque(maxlen=WINDOW_MIN)
        self.state: State | None = None
        self.modes: dict[str, int] = {}

    def __call__(self, _minute: int, obs: Observation, desired: int) -> int:
        self.window.append(obs)
        now = obs.t_s
        state = self.state or State(current_instances=desired)
        decision = decide(Window(tuple(self.window), now), self.policy, state)
        self.state = state.after(decision, now)
        self.modes[decision.mode] = self.modes.get(decision.mode, 0) + 1
        return decision.desired_instances


# --- the simulation ---


@dataclass
class Outcome:
    instance_hours: float
    slo_minutes: int


def simulate(load: FloatArray, controller: Controller, service: Service, initial: int) -> Outcome:
    """Run one policy over one trace; the feed's noise is seeded identically for every policy."""
    rng = np.random.default_rng(SEED + 1)
    in_service, pending = initial, []  # pending: minute each launching instance starts serving
    desired = initial
    instance_minutes = 0
    violations = 0
    for minute, lam in enumerate(load):
        in_service += sum(1 for ready in pending if ready <= minute)
        pending = [ready for ready in pending if ready > minute]
        p95, mean, failed = service.latency(lam / in_service)
        violations += p95 > SLO_MS
        instance_minutes += in_service + len(pending)
        noise = math.exp(rng.normal(0, P95_NOISE))
        obs = Observation(
            t_s=(minute + 1) * 60.0,
            instances=in_service,
            load_rps=rng.poisson(lam * 60) / 60.0,
            p95_ms=p95 * noise,
            mean_ms=mean * noise,
            errors=lam * failed,
        )
        new = min(max(controller(minute, obs, desired), 1), MAX_INSTANCES)
        total = in_service + len(pending)
        if new > total:
            pending += [minute + 1 + START_UP_MIN] * (new - total)
        elif new < total:
            cut = total - new
            dropped = min(cut, len(pending))
            pending = sorted(pending)[: len(pending) - dropped]  # newest launches go first
            in_service = max(1, in_service - (cut - dropped))
        desired = new
    return Outcome(instance_minutes / 60.0, violations)


def stratus_policy(recipe_target: float) -> Policy:
    """The one policy Stratus runs on every trace: defaults, the SLO and the recipe's target."""
    return Policy(
        latency_slo_ms=SLO_MS,
        min_instances=1,
        max_instances=MAX_INSTANCES,
        fallback_target_rps=recipe_target,
    )


@contextmanager
def true_latency_model(service: Service) -> Iterator[None]:
    """Diagnostic: make ``decide`` predict with the service's true p95 curve, guards off."""
    module = sys.modules[_decide_function.__module__]
    saved = module._predict, module._guard  # type: ignore[attr-defined]

    def predict(_f: object, _knee: object, counts: FloatArray, load: FloatArray) -> FloatArray:
        return np.array([service.latency(lam / c)[0] for c, lam in zip(counts, load, strict=True)])

    module._predict, module._guard = predict, lambda *_a, **_k: None  # type: ignore[attr-defined]
    try:
        yield
    finally:
        module._predict, module._guard = saved  # type: ignore[attr-defined]


@dataclass
class TraceResult:
    recipe: Outcome
    oracle: Outcome
    oracle_target: float
    stratus: Outcome
    modes: dict[str, int]
    perfect: Outcome | None = None


def run_trace(
    load: FloatArray, service: Service, recipe_target: float, diagnose: bool = False
) -> TraceResult:
    """All three policies on one trace (and the true-model diagnostic when asked)."""
    initial = math.ceil(load[0] / recipe_target)
    recipe = simulate(load, TargetTracking(recipe_target), service, initial)
    best: tuple[float, Outcome] | None = None
    limit = service.load_test(SLO_MS)
    for target in np.linspace(0.3 * limit, limit, ORACLE_STEPS):
        out = simulate(load, TargetTracking(float(target)), service, initial)
        if out.slo_minutes <= recipe.slo_minutes and (
            best is None or out.instance_hours < best[1].instance_hours
        ):
            best = (float(target), out)
    oracle_target, oracle = best if best is not None else (recipe_target, recipe)
    stratus_ctl = Stratus(stratus_policy(recipe_target))
    stratus = simulate(load, stratus_ctl, service, initial)
    perfect = None
    if diagnose:
        with true_latency_model(service):
            perfect = simulate(load, Stratus(stratus_policy(recipe_target)), service, initial)
    return TraceResult(recipe, oracle, oracle_target, stratus, stratus_ctl.modes, perfect)


# --- one pass over many deployments ---


def pass_seconds(n: int = 1000) -> float:
    """Wall time of one optimizer pass over ``n`` synthetic deployments (windows prebuilt)."""
    rng = np.random.default_rng(SEED + 2)
    jobs = []
    for _ in range(n):
        a, alpha, beta = rng.uniform(20, 200), rng.uniform(0, 0.5), rng.uniform(0, 1.5)
        hi = int(rng.integers(5, MAX_INSTANCES + 1))
        counts = rng.integers(1, hi + 1, size=60)
        loads = rng.uniform(1, 50, size=60) * counts
        p95 = a * counts**-alpha * (loads / counts) ** beta * np.exp(rng.normal(0, 0.05, 60))
        obs = tuple(
            Observation(60.0 * i, int(c), float(lam), float(p), float(p) / 2)
            for i, (c, lam, p) in enumerate(zip(counts, loads, p95, strict=True))
        )
        slo = float(np.quantile(p95, rng.uniform(0.3, 0.9)))
        policy = Policy(latency_slo_ms=slo, max_instances=hi)
        jobs.append((Window(obs), policy, State(current_instances=int(counts[-1]))))
    start = time.perf_counter()
    for window, policy, state in jobs:
        decide(window, policy, state)
    return time.perf_counter() - start


# --- report ---


def main() -> None:
    """Run every trace, print the table, then the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--diagnose", action="store_true", help="also run Stratus with the true latency curve"
    )
    args = parser.parse_args()
    service = Service()
    limit = service.load_test(SLO_MS)
    recipe_target = 0.5 * limit
    print(
        f"SLO p95 {SLO_MS:.0f} ms; load test: {limit:.1f} req/s per instance meets it; recipe "
        f"target {recipe_target:.1f} req/s per instance; start-up {START_UP_MIN} min"
    )
    header = (
        f"{'trace':<8} {'inst-h recipe':>13} {'oracle':>8} {'stratus':>8} "
        f"{'S/recipe':>9} {'S/oracle':>9} {'SLO-min r/o/s':>14} {'oracle tgt':>10}  modes"
    )
    print(header)
    print("-" * len(header))
    results: dict[str, dict[str, float | int]] = {}
    for name, load in traces(np.random.default_rng(SEED)).items():
        r = run_trace(load, service, recipe_target, args.diagnose)
        recipe, oracle, stratus = r.recipe, r.oracle, r.stratus
        vs_recipe = stratus.instance_hours / recipe.instance_hours
        vs_oracle = stratus.instance_hours / oracle.instance_hours
        slo = f"{recipe.slo_minutes}/{oracle.slo_minutes}/{stratus.slo_minutes}"
        print(
            f"{name:<8} {recipe.instance_hours:>13.1f} {oracle.instance_hours:>8.1f} "
            f"{stratus.instance_hours:>8.1f} {vs_recipe:>9.3f} {vs_oracle:>9.3f} {slo:>14} "
            f"{r.oracle_target:>10.1f}  {r.modes}"
        )
        results[name] = {
            "instance_hours_ratio": round(vs_recipe, 4),
            "instance_hours_ratio_vs_oracle": round(vs_oracle, 4),
            "slo_minutes_stratus": stratus.slo_minutes,
            "slo_minutes_target_tracking": recipe.slo_minutes,
            "slo_minutes_oracle": oracle.slo_minutes,
        }
        if r.perfect is not None:
            ratio = r.perfect.instance_hours / oracle.instance_hours
            print(
                f"{'':<8} with the true latency curve: {r.perfect.instance_hours:.1f} inst-h, "
                f"{ratio:.3f} of the oracle, {r.perfect.slo_minutes} SLO minutes"
            )
            results[name]["instance_hours_ratio_vs_oracle_true_model"] = round(ratio, 4)
            results[name]["slo_minutes_stratus_true_model"] = r.perfect.slo_minutes
    seconds = pass_seconds()
    print(f"one pass over 1000 synthetic deployments: {seconds:.3f} s (target ≤ 1 s)")
    targets = all(
        v["instance_hours_ratio"] <= 0.8
        and v["instance_hours_ratio_vs_oracle"] <= 1.05
        and v["slo_minutes_stratus"] <= v["slo_minutes_target_tracking"]
        for v in results.values()
    )
    print(f"targets met on every trace: {targets}")
    print(json.dumps({"traces": results, "pass_1000_s": round(seconds, 4)}))


if __name__ == "__main__":
    main()
