"""Short-term load forecast: the load to provision for until new capacity is in service."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.optimizer.types import FloatArray, mean, median

EWMA_HALFLIFE_S = 300.0
TREND_SPAN_S = 600.0
# σ is read over the fit's whole recent window: a median of absolute deviations needs many
# differences (over one hour its own spread was ~15 % of σ, and every pass paid it as margin).
SIGMA_SPAN_S = 10800.0
# Past this, bucket-to-bucket variation says the feed is broken or the traffic is pure bursts;
# either way the headroom it buys (e^(zσ)) must stay bounded.
MAX_SIGMA = 0.3
# A rising trend is only extrapolated when its slope is this many standard errors above zero;
# on noisy traffic an unqualified slope over a few points would amplify noise into capacity.
TREND_T_STAT = 2.0
# A straight line must explain most of the recent variation; a step inside the span fits a line
# with R² of at most about 0.75, a steady ramp well above 0.9.
TREND_MIN_R2 = 0.85
# ... and only while the newest few buckets still climb at this share of its slope or more.
TREND_END_POINTS = 4
TREND_END_SHARE = 0.5
# A fall moves the EWMA to now only when its slope over this span stands this many standard
# errors below zero and a line explains at least this much of it: noise does not. A step down
# may (a line explains up to 3/4 of one), but the level never goes under the newest buckets.
FALL_SPAN_S = 1800.0
FALL_T_STAT = 3.0
FALL_MIN_R2 = 0.5
FALL_FLOOR_POINTS = 3


class Auto:
    """``forecast_load``'s default for ``fall``: measure it from the buckets given."""


AUTO = Auto()


def forecast_load(
    t_s: FloatArray,
    load_rps: FloatArray,
    horizon_s: float,
    *,
    sigma: float = 0.0,
    z: float = 0.0,
    level: float | None = None,
    fall: float | None | Auto = AUTO,
) -> float:
    """max(current·e^(−zσ), EWMA (moved to now along a steady fall), significant linear trend
    ``horizon_s`` ahead); 0 with no data.

    The result is the *level* to provision for; callers add z·σ of bucket noise on top for the
    peak. The newest bucket counts discounted by that same z·σ, so a jump larger than the noise
    (a step) is followed at once, while a bucket that is merely high by chance does not get the
    noise margin twice. With ``sigma = 0`` the current value counts in full. ``level``, when
    given (a repeating pattern's expectation for now), stands in for the EWMA, which would lag
    the pattern's swings.
    """
    # The max is deliberately one-sided: over-forecasting costs an instance for a few minutes,
    # under-forecasting costs SLO minutes for a whole start-up delay.
    if load_rps.size == 0:
        return 0.0
    now = float(load_rps[-1]) * math.exp(-z * sigma)
    if isinstance(fall, Auto):
        fall = fall_slope(t_s, load_rps) if level is None else None
    candidates = [now, _ewma(t_s, load_rps, fall) if level is None else level]
    trend = _trend(t_s, load_rps, horizon_s)
    if trend is not None:
        candidates.append(trend)
    return max(candidates)


def _ewma(t_s: FloatArray, load: FloatArray, slope: float | None) -> float:
    """Exponentially time-decayed mean (weights halve every ``EWMA_HALFLIFE_S`` of age), moved
    to now along a significant fall's ``slope``: on a decay the plain mean lags above the load by
    the slope times its weights' mean age, and would hold capacity the load has already left."""
    age = t_s[-1] - t_s
    weights = np.exp2(-age / EWMA_HALFLIFE_S)
    total = float(weights.sum())
    mean = float(weights @ load) / total
    if slope is None:
        return mean
    # Never under what the newest buckets carry: a fall that has stopped is not extrapolated.
    return max(mean + slope * float(weights @ age) / total, median(load[-FALL_FLOOR_POINTS:]))


def falling(t_s: FloatArray, load: FloatArray) -> bool:
    """Whether the load is in a significant, steady fall (see ``fall_slope``)."""
    return fall_slope(t_s, load) is not None


def fall_slope(t_s: FloatArray, load: FloatArray) -> float | None:
    """The slope (req/s per s) of a fall over ``FALL_SPAN_S`` that stands ``FALL_T_STAT``
    standard errors below zero and that a line explains (R² ≥ ``FALL_MIN_R2``), else None."""
    if load.size == 0:
        return None
    recent = t_s >= t_s[-1] - FALL_SPAN_S
    line = fit_line(t_s[recent], load[recent]) if np.count_nonzero(recent) >= 6 else None
    if line is None or not line.slope < -FALL_T_STAT * line.se or line.r2 < FALL_MIN_R2:
        return None
    return line.slope


def load_sigma(t_s: FloatArray, load: FloatArray) -> float:
    """Robust σ of log load from one bucket to the next (differences cancel slow trends)."""
    if load.size == 0:
        return 0.0
    recent = (t_s >= t_s[-1] - SIGMA_SPAN_S) & (load > 0)
    logs = np.log(load[recent])
    if logs.size < 4:
        return 0.0
    diffs = logs[1:] - logs[:-1]
    mad = float(median(np.abs(diffs - median(diffs))))
    return min(1.4826 * mad / math.sqrt(2.0), MAX_SIGMA)


@dataclass(frozen=True, slots=True)
class Line:
    """A least-squares straight line through recent buckets."""

    slope: float  # req/s per s
    se: float  # its standard error
    r2: float  # share of the variation it explains
    level_now: float  # its value at the newest bucket


def fit_line(t: FloatArray, y: FloatArray) -> Line | None:
    """The least-squares line of ``y`` over ``t``; None with fewer than three distinct times."""
    n = t.size
    tc = t - mean(t)
    sxx = float(tc @ tc)
    if n < 3 or sxx <= 0:
        return None
    y_mean = mean(y)
    yc = y - y_mean
    slope = float(tc @ yc) / sxx
    resid = yc - slope * tc
    sse = float(resid @ resid)
    syy = float(yc @ yc)
    return Line(
        slope=slope,
        se=math.sqrt(sse / (n - 2) / sxx),
        r2=1.0 - sse / syy if syy > 0 else 0.0,
        level_now=y_mean + slope * float(tc[-1]),
    )


def _trend(t_s: FloatArray, load: FloatArray, horizon_s: float) -> float | None:
    """The level ``horizon_s`` ahead along a significant, ramp-shaped rise, else None."""
    recent = t_s >= t_s[-1] - TREND_SPAN_S
    t, y = t_s[recent], load[recent]
    line = fit_line(t, y) if t.size >= 4 else None
    if line is None or line.slope <= 0:
        return None
    if line.se > 0 and line.slope / line.se < TREND_T_STAT:
        return None
    if line.r2 < TREND_MIN_R2:
        return None  # a step or a spike, not a ramp: extrapolating it would overshoot
    newest = fit_line(t[-TREND_END_POINTS:], y[-TREND_END_POINTS:])
    if newest is None or newest.slope < TREND_END_SHARE * line.slope:
        return None  # the newest buckets no longer climb with it: a surge that levelled off
    return line.level_now + line.slope * horizon_s
