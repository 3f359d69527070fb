"""Repeating load patterns: detect a period (minutes to a week) and forecast from it.

The load history is put on a regular grid of ``GRID_S`` buckets (log of the bucket's mean load).
For each candidate period P the test replays the forecast the decision would make: at every
grid point t from the second cycle on, the load ``h`` buckets ahead is predicted (a) from the
recent level alone and (b) from the level with the pattern taken out plus the pattern at the
target phase, the pattern learnt only from the cycles *before* t (no peeking). The pattern is
significant when (b)'s squared error is smaller than (a)'s by a share ``SKILL_MIN`` or more and
that gain is ``T_MIN`` standard errors above zero over independent blocks of the history. Noise
and random walks fail this: a pattern learnt from their past predicts nothing about their future,
so it only adds error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.optimizer.types import FloatArray, json_float, median

GRID_S = 300.0
# Candidate periods: calendar periods (minutes), and the strongest peaks of the autocorrelation.
NAMED_PERIODS_MIN = (15, 20, 30, 45, 60, 90, 120, 180, 240, 360, 480, 720, 1440, 10080)
ACF_PEAKS = 8
MAX_PERIOD_S = 7 * 86400.0
MIN_CYCLES = 3
# The level a forecast starts from: the mean of the newest buckets with the pattern taken out.
LEVEL_BUCKETS = 3
# A smooth pattern shows little over a few minutes: it is judged over the look-ahead or this
# fraction of its period, whichever is longer.
HORIZON_SHARE = 12
# Significance: the pattern must remove this share of the forecast's squared error, and that
# gain must stand this many standard errors above zero over at least MIN_BLOCKS blocks.
SKILL_MIN = 0.2
T_MIN = 4.0
MIN_BLOCKS = 6
# Capacity is provisioned for the pattern's upper band: its mean plus this many standard
# deviations of the cycles around it at each phase, so a burst taller than average is covered.
UPPER_Z = 0.5
MAX_GAP_SHARE = 0.2
# A pattern whose swing (highest over lowest phase) is smaller than this is left to the
# short-term forecast: too small to plan capacity around, however regular.
MIN_AMPLITUDE = 1.15
# Bursts: a rise this many robust σ (and at least this much, log) over the bucket before, more
# often than this many times an hour and at least this many times in the history.
BURST_SIGMAS = 3.0
BURST_MIN_RISE = 0.1
BURST_PER_HOUR = 0.5
BURST_MIN_EVENTS = 6
# Spare capacity covers the burst height this share of the bursts stay under.
BURST_QUANTILE = 0.75
# A spike inside a bucket: the phase's second-busiest minute this far above its bucket's mean or
# more (noise of a few per cent lifts it less; it already has its margin in the peak's z·σ).
SPIKE_MIN = 1.1


@dataclass(frozen=True, slots=True)
class Pattern:
    """A significant repeating pattern of log load on a grid of ``step_s`` buckets."""

    period_s: float
    step_s: float
    strength: float  # share of the forecast's squared error the pattern removes (0..1)
    t_stat: float
    origin_s: float  # start of the bucket at phase 0
    mean: FloatArray  # log-load offset per phase, mean 0
    upper: FloatArray  # mean plus UPPER_Z standard deviations across cycles, per phase

    def phase(self, t_s: FloatArray) -> np.ndarray[Any, np.dtype[np.intp]]:
        """Phase index of the bucket holding each time."""
        steps = np.floor((np.asarray(t_s) - self.origin_s) / self.step_s).astype(np.intp)
        return np.asarray(steps % self.mean.size, dtype=np.intp)

    def phase_at(self, t_s: float) -> int:
        """Phase index of the bucket holding one time (``phase`` without the arrays)."""
        return math.floor((t_s - self.origin_s) / self.step_s) % self.mean.size

    def to_dict(self) -> dict[str, Any]:
        """This pattern summarised as JSON-native values (the profile itself is left out)."""
        return {
            "period_s": json_float(self.period_s, 1),
            "step_s": json_float(self.step_s, 1),
            "strength": json_float(self.strength, 4),
            "t_stat": json_float(self.t_stat, 2),
            "amplitude": json_float(float(np.exp(self.mean.max() - self.mean.min())), 3),
        }


@dataclass(frozen=True, slots=True)
class SeasonScan:
    """The outcome of one scan of a history: the pattern found, if any, and when it was made."""

    computed_s: float
    pattern: Pattern | None
    span_s: float  # how much history the scan read
    # Log spare capacity for bursts that recur (0: none do): the rise over the bucket before
    # that three in four of the history's bursts stay under.
    burst: float = 0.0

    def fresh(self, now_s: float, ttl_s: float) -> bool:
        """Whether this scan may still be used at ``now_s``."""
        return 0.0 <= now_s - self.computed_s < ttl_s

    def to_dict(self) -> dict[str, Any]:
        """This scan as JSON-native values."""
        return {
            "computed_s": json_float(self.computed_s, 3),
            "span_s": json_float(self.span_s, 1),
            "pattern": self.pattern.to_dict() if self.pattern is not None else None,
            "burst": json_float(self.burst, 4),
        }


@dataclass(frozen=True, slots=True)
class Rise:
    """What the pattern foresees over the look-ahead: its highest point and when it comes."""

    peak_rps: float  # the upper band's load there, from the current level (a spike's minutes)
    at_s: float  # start of the bucket the peak falls in
    gain: float  # the pattern's mean there over its mean now (1 = no rise)
    period_s: float
    strength: float
    expected_rps: float  # the pattern's highest mean load until the look-ahead's end (a spike's)


def rise(
    pattern: Pattern, t_s: FloatArray, load_rps: FloatArray, now_s: float, lookahead_s: float
) -> Rise:
    """The pattern's highest mean over ``(now, now + lookahead]`` and its upper-band load.

    The level is the newest buckets' log load with the pattern's mean taken out; a bucket that
    starts inside the look-ahead counts whole, so capacity is ready when it begins.
    """
    recent = (t_s > now_s - LEVEL_BUCKETS * pattern.step_s) & (load_rps > 0)
    if not np.count_nonzero(recent):
        return Rise(0.0, now_s, 1.0, pattern.period_s, pattern.strength, 0.0)
    logs = np.log(load_rps[recent]) - pattern.mean[pattern.phase(t_s[recent])]
    level = float(median(logs))
    # Buckets smear a rise over two of them: the one after the look-ahead counts too.
    ahead = now_s + np.arange(60.0, lookahead_s + pattern.step_s + 1.0, 60.0)
    phases = pattern.phase(ahead)
    means = pattern.mean[phases]
    i = int(means.argmax())
    here = float(pattern.mean[pattern.phase_at(now_s)])
    top = float(means[i])
    # The rise is expected where the pattern first covers half of it (in log terms).
    first = int((means >= here + 0.5 * (top - here)).argmax())
    start = pattern.origin_s + pattern.step_s * math.floor(
        (ahead[first] - pattern.origin_s) / pattern.step_s
    )
    gain = math.exp(top - here)
    peak = math.exp(level + float(pattern.upper[phases[i]]))
    spike = within_bucket(pattern, t_s, load_rps, int(phases[i]))
    peak *= spike
    # What the pattern expects until capacity ordered now serves, slow ramps included: the
    # bucket after the look-ahead is for a rise's start only, and would lead a smooth ramp by
    # a whole bucket.
    near = float(means[ahead <= now_s + max(lookahead_s, 60.0)].max())
    expected = math.exp(level + near) * spike
    return Rise(peak, start, gain, pattern.period_s, pattern.strength, expected)


def within_bucket(pattern: Pattern, t_s: FloatArray, load_rps: FloatArray, phase: int) -> float:
    """Factor from a phase's bucket mean to the load its busiest minutes carry: ≥ ``SPIKE_MIN``,
    or 1 when no spike hides in the bucket.

    The profile holds bucket means (the long history comes downsampled), and a batch shorter
    than a bucket hides in one: capacity for the mean would meet it a third short. The window's
    own cycles, at full resolution, show how far the phase's second-busiest minute (one minute
    is noise, two make a spike) lay above its bucket's mean; the median over those cycles.
    """
    if t_s.size < 3:
        return 1.0
    # The phase's bucket in each cycle the window spans, found by bisection (times ascend).
    period = pattern.mean.size * pattern.step_s
    first = pattern.origin_s + phase * pattern.step_s
    cycles = np.arange(
        math.floor((float(t_s[0]) - first) / period),
        math.floor((float(t_s[-1]) - first) / period) + 1,
    )
    starts = first + cycles * period
    lo = t_s.searchsorted(starts).tolist()
    hi = t_s.searchsorted(starts + pattern.step_s).tolist()
    ratios = [
        float(group[-2]) * group.size / total
        for a, b in zip(lo, hi, strict=True)
        if b - a >= 3 and (total := float((group := np.sort(load_rps[a:b])).sum())) > 0
    ]
    factor = median(ratios) if ratios else 1.0
    return factor if factor >= SPIKE_MIN else 1.0


def scan(t_s: FloatArray, load_rps: FloatArray, lookahead_s: float) -> SeasonScan:
    """Look for the most significant repeating pattern in a history of any length."""
    now = float(t_s[-1]) if t_s.size else 0.0
    grid = _grid(t_s, load_rps)
    if grid is None:
        return SeasonScan(now, None, 0.0)
    origin, x = grid
    span = x.size * GRID_S
    burst = _burst(x)
    h = max(1, round(lookahead_s / GRID_S))
    found = [
        (p, *r)
        for p in _periods(x)
        if (r := _test(x, p, max(h, p // HORIZON_SHARE))) is not None
        and _amplitude(x, p) >= MIN_AMPLITUDE
    ]
    if not found:
        return SeasonScan(now, None, span, burst)
    # A multiple of the period, or a near neighbour, predicts about as well: among those within
    # 5 % of the best, a calendar period wins, then the shortest.
    top = max(s for _, s, _ in found)
    close = [f for f in found if f[1] >= top / 1.05]
    named = [f for f in close if f[0] in _named()]
    p, strength, t_stat = (named or close)[0]
    mean, upper = _profile(x, p)
    # Phase 0 is the first bucket of the whole cycles the profile was taken over.
    start = origin + (x.size % p) * GRID_S
    pattern = Pattern(p * GRID_S, GRID_S, strength, t_stat, start, mean, upper)
    return SeasonScan(now, pattern, span, burst)


def _grid(t_s: FloatArray, load: FloatArray) -> tuple[float, FloatArray] | None:
    """(start time, log of the mean load per GRID_S bucket), gaps interpolated; None if sparse."""
    if t_s.size < 2:
        return None
    # Buckets on absolute multiples of GRID_S, so that every scan puts the phases alike.
    first = math.floor(float(t_s[0]) / GRID_S)
    n = math.floor(float(t_s[-1]) / GRID_S) - first + 1
    if n < MIN_CYCLES * 3:
        return None
    start = first * GRID_S
    idx = np.clip((np.floor(t_s / GRID_S) - first).astype(np.intp), 0, n - 1)
    sums = np.bincount(idx, weights=load, minlength=n)
    counts = np.bincount(idx, minlength=n)
    have = counts > 0
    if have.sum() < (1.0 - MAX_GAP_SHARE) * n:
        return None
    mean = np.where(have, sums / np.maximum(counts, 1), 0.0)
    floor = max(float(median(mean[have])) * 1e-3, 1e-6)
    logs = np.log(np.maximum(mean, floor))
    pos = np.arange(n, dtype=np.float64)
    filled = np.interp(pos, pos[have], logs[have])
    return start, np.asarray(filled, dtype=np.float64)


def _burst(x: FloatArray) -> float:
    """The ``BURST_QUANTILE`` of the bursts' rises (log) in the grid's log load, when they recur;
    else 0.

    A burst is a run of buckets each more than ``BURST_SIGMAS`` robust σ of the bucket-to-bucket
    change above the bucket before the run: capacity sized then would have had to absorb it.
    Recurring means more than ``BURST_PER_HOUR`` on average and ``BURST_MIN_EVENTS`` in all: a
    flash crowd, a step or a daily rise is an event to react to, not a reason to keep spare
    capacity around the clock.
    """
    if x.size < 3:
        return 0.0
    diffs = np.diff(x)
    sigma = 1.4826 * float(median(np.abs(diffs - median(diffs))))
    threshold = max(BURST_SIGMAS * sigma, BURST_MIN_RISE)
    base, above = _runs(x, threshold)
    starts = np.flatnonzero(above & ~np.concatenate(([False], above[:-1])))
    hours = x.size * GRID_S / 3600.0
    if starts.size < BURST_MIN_EVENTS or starts.size <= BURST_PER_HOUR * hours:
        return 0.0
    rises = x - np.concatenate(([x[0]], base[:-1]))
    peaks = np.maximum.reduceat(np.where(above, rises, 0.0), starts)
    return float(np.quantile(peaks, BURST_QUANTILE))


def _runs(x: FloatArray, threshold: float) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """(base, above) per bucket: whether it lies more than ``threshold`` above the base, and the
    base, which holds through a run (a burst's rise is from before it) and else follows ``x``.

    A run can only start with a jump of more than ``threshold`` over the bucket before it, and
    lasts until a bucket is back within ``threshold`` of its base: the history is walked jump by
    jump rather than bucket by bucket."""
    base = x.copy()
    above = np.zeros(x.size, dtype=bool)
    end = 0  # the first bucket after the latest run: never above
    for start in ((x[1:] - x[:-1]) > threshold).nonzero()[0].tolist():
        start += 1
        if start <= end:
            continue  # inside that run, whose base is not the bucket before
        ref = float(x[start - 1])
        end = _run_end(x, start, ref, threshold)
        above[start:end] = True
        base[start:end] = ref
    return base, above


def _run_end(x: FloatArray, start: int, ref: float, threshold: float) -> int:
    """The first bucket after ``start`` not more than ``threshold`` above ``ref`` (``x.size``
    if none), searched in doubling blocks: most runs are a bucket or two."""
    i, size = start + 1, 8
    while i < x.size:
        back = (~(x[i : i + size] - ref > threshold)).nonzero()[0]
        if back.size:
            return i + int(back[0])
        i, size = i + size, 2 * size
    return x.size


def _periods(x: FloatArray) -> list[int]:
    """Candidate periods in buckets: calendar periods and the highest local maxima of the
    autocorrelation, at least 3 buckets, at most a week, with MIN_CYCLES of them in the data."""
    top = min(x.size // MIN_CYCLES, int(MAX_PERIOD_S // GRID_S))
    centred = x - x.mean()
    size = 1 << int(2 * x.size - 1).bit_length()
    spectrum = np.fft.rfft(centred, size)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), size)[: top + 2]
    lags = np.arange(3, min(top, acf.size - 2) + 1)
    peaks = lags[(acf[lags] > acf[lags - 1]) & (acf[lags] >= acf[lags + 1]) & (acf[lags] > 0)]
    strongest = peaks[np.argsort(acf[peaks])[::-1][:ACF_PEAKS]]
    return sorted(p for p in _named() | {int(p) for p in strongest} if 3 <= p <= top)


def _named() -> set[int]:
    return {round(m * 60.0 / GRID_S) for m in NAMED_PERIODS_MIN}


def _test(x: FloatArray, p: int, h: int) -> tuple[float, float] | None:
    """(strength, t) of period ``p`` for forecasts ``h`` buckets ahead, when significant."""
    k = x.size // p
    m = x[x.size - k * p :].reshape(k, p)
    dev = m - m.mean(axis=1, keepdims=True)
    # The profile each cycle may use: the mean of the cycles before it (cycle 0 has none).
    prior = np.cumsum(dev, axis=0)[:-1] / np.arange(1, k)[:, None]
    flat_x = m.ravel()
    flat_s = np.concatenate([np.zeros(p), prior.ravel()])
    csum_x = np.concatenate([[0.0], np.cumsum(flat_x)])
    csum_d = np.concatenate([[0.0], np.cumsum(flat_x - flat_s)])
    lv = LEVEL_BUCKETS
    # The forecasts are made at the buckets ``first`` to ``last`` (excluded): consecutive, so
    # every lookup below is a slice rather than an index array.
    first, last = p + lv - 1, flat_x.size - h
    if last - first < MIN_BLOCKS * 2:
        return None
    now, ahead = slice(first + 1, last + 1), slice(first + h, last + h)
    before = slice(first + 1 - lv, last + 1 - lv)
    level = (csum_x[now] - csum_x[before]) / lv
    level_d = (csum_d[now] - csum_d[before]) / lv
    target = flat_x[ahead]
    e0 = target - level
    e1 = target - level_d - flat_s[ahead]
    e0_sq = e0 * e0
    gain = e0_sq - e1 * e1
    total = float(e0_sq.sum())
    if total <= 0:
        return None
    strength = float(gain.sum()) / total
    if strength < SKILL_MIN:
        return None
    blocks = max(MIN_BLOCKS, min((last - first) // max(p // 2, 1), 64))
    # Sums over ``blocks`` near-equal consecutive blocks (as ``np.array_split`` cuts them).
    size, extra = divmod(gain.size, blocks)
    starts = np.arange(blocks) * size + np.minimum(np.arange(blocks), extra)
    sums = np.add.reduceat(gain, starts)
    sd = float(sums.std(ddof=1))
    t_stat = float(sums.mean()) / (sd / math.sqrt(blocks)) if sd > 0 else math.inf
    return (strength, t_stat) if t_stat >= T_MIN else None


def _amplitude(x: FloatArray, p: int) -> float:
    mean = _offsets(_cycles(x, p))
    return math.exp(float(mean.max() - mean.min()))


def _profile(x: FloatArray, p: int) -> tuple[FloatArray, FloatArray]:
    """Mean offset per phase over the whole cycles, and its upper band."""
    dev = _cycles(x, p)
    k = dev.shape[0]
    mean = _offsets(dev)
    sd = dev.std(axis=0, ddof=1) if k > 1 else np.zeros(p)
    return mean, mean + UPPER_Z * sd


def _cycles(x: FloatArray, p: int) -> FloatArray:
    """The whole cycles of period ``p`` at the end of ``x``, a row each, less their own means."""
    k = x.size // p
    m = x[x.size - k * p :].reshape(k, p)
    return np.asarray(m - m.mean(axis=1, keepdims=True), dtype=np.float64)


def _offsets(dev: FloatArray) -> FloatArray:
    """The mean offset per phase, itself centred on 0 (the amplitude needs no spread)."""
    mean = dev.mean(axis=0)
    return np.asarray(mean - mean.mean(), dtype=np.float64)
