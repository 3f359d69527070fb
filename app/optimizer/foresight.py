"""Foresight glue between a window and the pattern scan: which part of a long window the fit
reads, when a kept scan is reused, what the pattern foresees, and how a reason says so."""

from __future__ import annotations

from datetime import UTC, datetime

from app.optimizer.seasonal import Rise, SeasonScan, rise, scan
from app.optimizer.types import Policy, State, WindowArrays

# The fit and the short-term forecast read the newest span of the window; the rest of a long
# window (days, downsampled) only feeds the search for repeating patterns.
RECENT_SPAN_S = 3 * 3600.0
# A pattern only changes hourly: a scan is reused for this long.
SEASON_TTL_S = 3600.0
# The pattern looks this many forecast horizons ahead (plus the bucket after: a start-up that
# outlasts the horizon is still covered); it pre-scales only for a rise of its mean by this
# factor or more over the current phase.
SEASON_LOOKAHEAD = 1.0
SEASON_MIN_GAIN = 1.15


def recent(cols: WindowArrays) -> WindowArrays:
    """The newest ``RECENT_SPAN_S`` of the window's columns."""
    if cols.n == 0 or cols.t_s[-1] - cols.t_s[0] <= RECENT_SPAN_S:
        return cols
    keep = cols.t_s >= cols.t_s[-1] - RECENT_SPAN_S
    return WindowArrays(
        t_s=cols.t_s[keep],
        instances=cols.instances[keep],
        load_rps=cols.load_rps[keep],
        p95_ms=cols.p95_ms[keep],
        mean_ms=cols.mean_ms[keep],
        bytes_per_s=cols.bytes_per_s[keep],
        errors=cols.errors[keep],
    )


def season_for(cols: WindowArrays, policy: Policy, state: State, now: float) -> SeasonScan | None:
    """The state's scan while fresh, else a new scan of the whole window."""
    if state.season is not None and state.season.fresh(now, SEASON_TTL_S):
        return state.season
    if cols.n < 2:
        return None
    return scan(cols.t_s, cols.load_rps, SEASON_LOOKAHEAD * policy.forecast_horizon_s)


def seen_ahead(
    season: SeasonScan | None, cols: WindowArrays, policy: Policy, now: float
) -> Rise | None:
    """What the pattern, when there is one, foresees over the look-ahead."""
    if season is None or season.pattern is None or cols.n == 0:
        return None
    lookahead = SEASON_LOOKAHEAD * policy.forecast_horizon_s
    return rise(season.pattern, cols.t_s, cols.load_rps, now, lookahead)


def foresight(ahead: Rise) -> str:
    """The reason's opening when a pattern raised the forecast."""
    return (
        f"Pattern with period {duration(ahead.period_s)}, strength {ahead.strength:.2f}: "
        f"pre-scaling for the rise expected at "
        f"{datetime.fromtimestamp(ahead.at_s, UTC):%H:%M} UTC (to ≈{ahead.peak_rps:.0f} "
        f"req/s). "
    )


def duration(seconds: float) -> str:
    """A period in words: minutes below two hours, hours below two days, then days."""
    minutes = round(seconds / 60.0)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 2 * 1440:
        return f"{minutes / 60:g} h"
    return f"{minutes / 1440:g} days"
