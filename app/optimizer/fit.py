"""Least-squares fit of ``t = a·C^(-α)·(λ/C)^β`` in log space, with α, β ≥ 0."""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from app.optimizer.types import (
    Fit,
    FitCriteria,
    FloatArray,
    Knee,
    Observation,
    Window,
    mean,
    median,
)

# A coefficient whose unconstrained estimate lies this many standard errors below zero is evidence
# that the power law is the wrong model (latency falling as load rises), not noise to clamp.
SIGN_T_STAT = 3.0
# ... and only when it is also materially negative: with hundreds of points a slope of -0.02 is
# "significant" yet harmless once clamped to 0. α gets more slack because the queue's knee, which a
# straight line cannot follow, leaks into it after every scale-out; α ≤ -0.5 (latency growing with
# C at a fixed per-instance load, as behind a shared bottleneck) is still caught.
SIGN_TOLERANCE = {"alpha": 0.5, "beta": 0.1}
# Above this |correlation| between log C and log(λ/C) the two effects cannot be told apart.
MAX_CONFOUNDING = 0.98
# When log latency varies less than this, R² only measures noise and is not asked for.
FLAT_LOG_STD = 0.1
# Residuals beyond this many robust standard deviations (and beyond the floor, in log units) are
# outliers; trimming needs enough points for the median absolute deviation to mean something.
OUTLIER_SIGMAS = 4.0
OUTLIER_FLOOR = 0.15
MIN_POINTS_TO_TRIM = 10
MAX_OUTLIER_FRACTION = 0.2


def fit(
    observations: Window | Sequence[Observation],
    *,
    beta: float | None = None,
    criteria: FitCriteria | None = None,
) -> Fit:
    """Fit p95 latency against instance count and per-instance load, saturated buckets left out."""
    window = observations if isinstance(observations, Window) else Window.of(observations)
    cols = window.arrays
    keep = ~cols.saturated
    return fit_arrays(
        cols.instances[keep], cols.load_rps[keep], cols.p95_ms[keep], beta=beta, criteria=criteria
    )


def fit_arrays(
    instances: npt.ArrayLike,
    load_rps: npt.ArrayLike | None,
    value: npt.ArrayLike,
    *,
    beta: float | None = None,
    criteria: FitCriteria | None = None,
) -> Fit:
    """Fit ``value = a·C^(-α)·(λ/C)^β``; β is estimated when ``beta`` is None and λ/C varies."""
    crit = criteria or FitCriteria()
    c = np.asarray(instances, dtype=np.float64)
    t = np.asarray(value, dtype=np.float64)
    lam = np.ones_like(c) if load_rps is None else np.asarray(load_rps, dtype=np.float64)
    keep = np.isfinite(c) & np.isfinite(t) & np.isfinite(lam) & (c >= 1) & (t > 0) & (lam > 0)
    c, t, lam = c[keep], t[keep], lam[keep]
    n = int(c.size)
    if n == 0:
        return _empty_fit(beta)
    distinct = _distinct(c)

    y = np.log(t)
    log_c = np.log(c)
    log_u = np.log(lam / c)
    du = _centred(log_u)  # for the spread and the confounding test alike
    spread = math.sqrt(float(du @ du) / n)
    problems: list[str] = []
    notes: list[str] = []

    alpha_free = distinct >= 2
    beta_free = beta is None and load_rps is not None and spread >= crit.min_load_spread
    if alpha_free and beta_free and _confounded(_centred(log_c), du):
        # Only C moved (load constant): the data cannot split α from β. Attributing the effect to
        # per-instance load is the cautious choice, as it predicts slower responses at higher load.
        alpha_free = False
        notes.append("C and λ/C moved together: effect attributed to per-instance load")
    fixed_beta = 0.0 if beta is None else float(beta)
    if not beta_free:
        y = y - fixed_beta * log_u

    names = ["log_a", *(["alpha"] if alpha_free else []), *(["beta"] if beta_free else [])]
    x = np.empty((n, len(names)))
    x[:, 0] = 1.0
    if alpha_free:
        np.negative(log_c, out=x[:, 1])
    if beta_free:
        x[:, -1] = log_u
    coef, sign_problems = _nonnegative_lstsq(x, y, names)
    resid = y - x @ coef
    outliers = _outliers(resid) if n >= MIN_POINTS_TO_TRIM else np.zeros(n, dtype=bool)
    n_out = int(np.count_nonzero(outliers))
    if n_out:
        # Buckets near the queue's knee sit far above any straight line in log space; one such
        # minute would otherwise wreck R² for the whole window. They still bound the utilisation
        # guard in ``decide``, which is where that knowledge is used.
        x, y = x[~outliers], y[~outliers]
        coef, sign_problems = _nonnegative_lstsq(x, y, names)
        resid = y - x @ coef
        notes.append(f"{n_out} outlying bucket(s) left out of the fit")
        if n_out > MAX_OUTLIER_FRACTION * n:
            problems.append(f"{n_out} of {n} points are outliers")
    problems.extend(sign_problems)
    dof = max(int(y.size) - len(names), 1)
    residual_std = float(math.sqrt(float(resid @ resid) / dof))
    centred = _centred(y)
    sst = float(centred @ centred)
    r2 = 1.0 - float(resid @ resid) / sst if sst > 1e-12 else float("nan")
    log_std = math.sqrt(sst / y.size)

    values = dict(zip(names, coef.tolist(), strict=True))
    identified = alpha_free or beta_free
    if n < crit.min_points:
        problems.append(f"only {n} points (need {crit.min_points})")
    if not identified:
        problems.append(
            f"not identifiable: {distinct} distinct C and λ/C spread {spread:.3f} "
            f"(need 2 distinct C or spread ≥ {crit.min_load_spread})"
        )
    if residual_std > crit.max_residual_std:
        problems.append(f"residual spread {residual_std:.2f} above {crit.max_residual_std}")
    if log_std > FLAT_LOG_STD and not r2 >= crit.min_r2:
        problems.append(f"R² {r2:.2f} below {crit.min_r2}")
    return Fit(
        a=math.exp(values["log_a"]),
        alpha=values.get("alpha", 0.0),
        beta=values.get("beta", fixed_beta),
        beta_fixed=not beta_free,
        alpha_identified=alpha_free,
        n=n,
        distinct_instances=distinct,
        load_spread=spread,
        r2=r2,
        residual_std=residual_std,
        trustworthy=not problems,
        problems=tuple(problems),
        notes=tuple(notes),
        outliers=n_out,
    )


def _nonnegative_lstsq(
    x: FloatArray, y: FloatArray, names: list[str]
) -> tuple[FloatArray, list[str]]:
    """Least squares with every coefficient but the intercept ≥ 0, by enumerating active sets.

    Every subset's system is a corner of the full one's normal equations, so ``XᵀX`` and ``Xᵀy``
    are taken once; the standard errors only when a coefficient is negative enough to need them.
    """
    normal = (x.T @ x).tolist(), (x.T @ y).tolist()
    every = list(range(len(names)))
    values, inv = _lstsq(x, y, normal, every)
    coef = np.array(values)
    suspects = [i for i in every[1:] if values[i] < -SIGN_TOLERANCE[names[i]]]
    se = _standard_errors(x, y, coef, inv) if suspects else []
    problems = [
        f"{names[i]} = {values[i]:.2f} is significantly negative"
        for i in suspects
        if se[i] > 0 and values[i] / se[i] < -SIGN_T_STAT
    ]
    if all(v >= 0 for v in values[1:]):
        return coef, problems
    # With at most two constrained coefficients, the constrained optimum is the best of the
    # feasible unconstrained solutions over the subsets of free columns (KKT, convex problem).
    # The intercept-only solution is always feasible, so it seeds the search.
    intercept = [mean(y)] + [0.0] * (len(names) - 1)
    rest = y - intercept[0]
    best = (float(rest @ rest), intercept)
    # Every constrained coefficient free is the solution already found infeasible above.
    for k in range(len(names) - 2, 0, -1):
        for subset in itertools.combinations(every[1:], k):
            cols = [0, *subset]
            sub, _ = _lstsq(x, y, normal, cols)
            if any(v < 0 for v in sub[1:]):
                continue
            full = [0.0] * len(names)
            for i, v in zip(cols, sub, strict=True):
                full[i] = v
            resid = y - x @ np.array(full)
            sse = float(resid @ resid)
            if sse < best[0]:
                best = (sse, full)
    return np.array(best[1]), problems


def _outliers(resid: FloatArray) -> npt.NDArray[np.bool_]:
    """Residuals far from the bulk, by the median absolute deviation."""
    off = np.abs(resid - median(resid))
    scale = 1.4826 * median(off)
    return np.asarray(off > max(OUTLIER_SIGMAS * scale, OUTLIER_FLOOR))


# The normal equations of a least-squares problem as plain floats: XᵀX and Xᵀy.
Normal = tuple[list[list[float]], list[float]]


def _lstsq(
    x: FloatArray, y: FloatArray, normal: Normal, cols: list[int]
) -> tuple[list[float], list[list[float]] | None]:
    """Ordinary least squares on the columns ``cols`` of ``x``, and the inverse of their
    ``XᵀX`` (None when unidentified).

    By the normal equations (``normal``, of all of ``x``'s columns: at most three, well scaled),
    inverted by cofactors in plain floats: for a pass's short windows numpy's linear algebra
    costs more in calls than in arithmetic. A singular system falls back to ``lstsq``.
    """
    gram, xty = normal
    inv = _inverse([[gram[i][j] for j in cols] for i in cols]) if x.shape[0] > len(cols) else None
    if inv is None:
        solution, _, _, _ = np.linalg.lstsq(x[:, cols], y, rcond=None)
        return np.asarray(solution, dtype=np.float64).tolist(), None
    v = [xty[i] for i in cols]
    return [sum(map(operator.mul, row, v)) for row in inv], inv


def _standard_errors(
    x: FloatArray, y: FloatArray, coef: FloatArray, inv: list[list[float]] | None
) -> list[float]:
    """The standard errors of ``_lstsq``'s coefficients on all of ``x``: inf when unidentified."""
    n, p = x.shape
    if inv is None:
        return [math.inf] * p
    resid = y - x @ coef
    sigma2 = float(resid @ resid) / (n - p)
    return [math.sqrt(max(inv[i][i] * sigma2, 0.0)) for i in range(p)]


def _inverse(m: list[list[float]]) -> list[list[float]] | None:
    """Inverse of a symmetric 1×1, 2×2 or 3×3 matrix; None when (nearly) singular, i.e. when
    the determinant vanishes against the diagonal's product (collinear columns)."""
    p = len(m)
    scale = math.prod(m[i][i] for i in range(p))
    if not scale > 0:
        return None
    if p == 1:
        return [[1.0 / m[0][0]]]
    if p == 2:
        (a, b), (_, d) = m
        det = a * d - b * b
        if abs(det) <= 1e-10 * scale:
            return None
        return [[d / det, -b / det], [-b / det, a / det]]
    (a, b, c), (_, e, f), (_, _, i) = m
    co = [e * i - f * f, c * f - b * i, b * f - c * e, a * i - c * c, b * c - a * f, a * e - b * b]
    det = a * co[0] + b * co[1] + c * co[2]
    if abs(det) <= 1e-10 * scale or not math.isfinite(det):
        return None
    v00, v01, v02, v11, v12, v22 = (v / det for v in co)
    return [[v00, v01, v02], [v01, v11, v12], [v02, v12, v22]]


def _confounded(dc: FloatArray, du: FloatArray) -> bool:
    """Whether log C and log(λ/C), each less its mean, are (anti-)collinear in this window."""
    scc, suu = float(dc @ dc), float(du @ du)
    if scc <= 0 or suu <= 0:
        return False
    return abs(float(dc @ du)) / math.sqrt(scc * suu) > MAX_CONFOUNDING


def _distinct(v: FloatArray) -> int:
    """How many distinct values a non-empty array holds: the changes between neighbours in
    sorted order, cheaper than a set of Python floats."""
    ordered = v.copy()
    ordered.sort()
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1


def _centred(v: FloatArray) -> FloatArray:
    """``v`` less its mean."""
    return v - mean(v)


def _std(v: FloatArray) -> float:
    """Population standard deviation; cheaper than ``np.std`` for short arrays."""
    d = _centred(v)
    return math.sqrt(float(d @ d) / v.size)


def _empty_fit(beta: float | None) -> Fit:
    return Fit(
        a=1.0,
        alpha=0.0,
        beta=0.0 if beta is None else beta,
        beta_fixed=True,
        alpha_identified=False,
        n=0,
        distinct_instances=0,
        load_spread=0.0,
        r2=float("nan"),
        residual_std=float("nan"),
        trustworthy=False,
        problems=("no usable observations",),
    )


# --- the queueing ("knee") model of latency against per-instance load ---

# Candidate capacities μ, as multiples of the highest per-instance load observed: from just past it
# (the data already shows the blow-up) to far beyond it (no curvature seen: nearly a straight line).
KNEE_GRID = np.geomspace(1.01, 12.0, 28)
# The knee model is trusted with this many points, this much variation in log(λ/C), and relative
# residuals no wider than this.
KNEE_MIN_POINTS = 10
KNEE_MIN_SPREAD = 0.05
KNEE_MAX_RESIDUAL = 0.15
# χ² (1 degree of freedom) at 95 %: how much worse than the best a plausible capacity may fit.
KNEE_CHI2 = 3.84


def fit_knee(
    instances: npt.ArrayLike,
    load_rps: npt.ArrayLike,
    value: npt.ArrayLike,
    *,
    alpha: float = 0.0,
    vouched: tuple[float, float] | None = None,
) -> Knee:
    """Fit ``t·C^α = A + B/(μ − λ/C)``: flat at low load, unbounded as λ/C nears capacity μ.

    This is the shape of a queue's waiting time (M/M/1 exactly, M/M/c closely), which a power law
    cannot follow: fitted to the flat part, a power law under-predicts the knee. μ is searched on a
    grid of multiples of the highest per-instance load seen; A ≥ 0 and B > 0 by linear least squares
    with relative (≈ log-space) errors for each μ. ``alpha`` (from the power-law fit) takes out the
    effect of the count itself, so the queue is modelled per instance. ``vouched``, a
    (per-instance load, value) pair known to hold (a load test's limit at the SLO), rules out
    capacities that would put the value there above it, unless buckets missed that value at or
    below that load (``_vouched``).
    """
    c = np.maximum(np.asarray(instances, dtype=np.float64), 1.0)
    u = np.asarray(load_rps, dtype=np.float64) / c
    y = np.asarray(value, dtype=np.float64)
    if alpha != 0.0:  # C^0 is 1 exactly
        y = y * np.power(c, alpha)
    keep = np.isfinite(u) & np.isfinite(y) & (u > 0) & (y > 0)
    u, y = u[keep], y[keep]
    n = int(u.size)
    if n < 3:
        return Knee(0.0, 0.0, math.inf, alpha, n, 0.0, math.nan, False, ("too few points",))
    u_max = float(u.max())
    spread = _std(np.log(u))
    mu = u_max * KNEE_GRID  # (G,)
    x = 1.0 / (mu[None, :] - u[:, None])  # (n, G)
    w = 1.0 / (y * y)  # relative errors
    sw, swy = float(w.sum()), float(w @ y)
    swx = w @ x
    swxx = w @ (x * x)
    swxy = (w * y) @ x
    scale = sw * swxx
    det = scale - swx * swx
    ok = det > 1e-12 * np.maximum(scale, 1e-300)
    det = np.where(ok, det, 1.0)
    b = (sw * swxy - swx * swy) / det
    a = (swy - b * swx) / sw
    # Σ w·(a + b·x − y)² from the sums already taken (Σ w·y² = n): no n × G residual table.
    two_a = 2.0 * a
    sse = a * a * sw + b * b * swxx + n + two_a * b * swx - two_a * swy - 2.0 * b * swxy
    sse = np.maximum(sse, 0.0)
    sse = np.where(ok & (b > 0) & (a >= 0), sse, np.inf)
    best = int(sse.argmin())
    problems: list[str] = []
    if not math.isfinite(float(sse[best])):
        return Knee(0.0, 0.0, math.inf, alpha, n, spread, math.nan, False, ("no rising fit",))
    rms = math.sqrt(float(sse[best]) / max(n - 3, 1))
    # Most buckets sit on the flat part, which says little about where the knee is; among the
    # capacities the data cannot reject (profile likelihood, ≈ 95 %), take the smallest: the most
    # pessimistic latency near saturation that is still consistent with what was observed.
    plausible = sse <= float(sse[best]) * (1.0 + KNEE_CHI2 / max(n - 3, 1))
    if vouched is not None:
        plausible = _vouched(plausible, sse, mu, a, b, vouched, (u, y), n)
    best = int(plausible.argmax())  # the first plausible: there is one, the best
    if best == 0:
        # A wall just past the highest load seen fits as well as anything: the data has not shown
        # where the knee is, so this model says nothing beyond the power law and the guards.
        problems.append("knee not located: the data cannot reject capacity at the highest load")
    if n < KNEE_MIN_POINTS:
        problems.append(f"only {n} points (need {KNEE_MIN_POINTS})")
    if spread < KNEE_MIN_SPREAD:
        problems.append(f"per-instance load spread {spread:.3f} below {KNEE_MIN_SPREAD}")
    if rms > KNEE_MAX_RESIDUAL:
        problems.append(f"relative residual {rms:.2f} above {KNEE_MAX_RESIDUAL}")
    return Knee(
        float(a[best]),
        float(b[best]),
        float(mu[best]),
        alpha,
        n,
        spread,
        rms,
        not problems,
        tuple(problems),
    )


def _vouched(
    plausible: npt.NDArray[np.bool_],
    sse: FloatArray,
    mu: FloatArray,
    a: FloatArray,
    b: FloatArray,
    vouched: tuple[float, float],
    points: tuple[FloatArray, FloatArray],
    n: int,
) -> npt.NDArray[np.bool_]:
    """The capacities left once a load test's (load, value) is taken as an observation.

    The queue's shape is an approximation (M/M/1 for what may be M/M/c): fitted to the flat part
    of a many-worker queue, the smallest plausible wall can fall below a load a load test showed
    to meet the SLO. Unless the buckets themselves missed the value at or below that load, the
    load test wins: among the capacities that keep it, those the data fit about as well as the
    best of them.
    """
    u_ok, limit = vouched
    gap = mu - u_ok
    meets = (gap > 0) & (a + b / np.where(gap > 0, gap, 1.0) <= limit) & np.isfinite(sse)
    if (plausible & meets).any():
        return np.asarray(plausible & meets)
    u, y = points
    if not meets.any() or bool(np.any((u <= u_ok) & (y > limit))):
        return plausible  # the data contradict the load test
    best = float(sse[meets].min())
    return np.asarray(meets & (sse <= best * (1.0 + KNEE_CHI2 / max(n - 3, 1))))
