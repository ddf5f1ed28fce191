"""Drift forecast: a robust trend of each angle over a device's recent checks, and when it reaches
the threshold ("at this rate yaw reaches 0.5° in ~4 days (±1)").

Three estimators of the same thing, (level now, slope per day, their uncertainty), measured
against each other by benchmarks/alert_replay.py:

- The bent line (the default): σ-weighted least squares over the device's recent checks (up to
  two weeks of them) of a line that may bend once where the drift started, outliers left out. It
  is the only one within ±20% of the crossing time on slow ramps (0.05°/day) both from the start
  of a history and after days of a camera that did not move: a fixed window is too short for the
  first and too long for the second, a Kalman filter's slope walk trades one for the other.
- Theil–Sen: the median of the pairwise slopes over a window of recent checks; a single outlier
  check moves it not at all, and its spread gives a slope interval without assuming the reported
  σ are right.
- A local-linear-trend Kalman filter: level and slope as the state, the reported σ as measurement
  noise, innovations beyond a gate rejected as outliers; O(1) per check, adapts to a change of rate.

Pure: numbers in, numbers out. Times are days as floats (any origin), offsets degrees.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np
from pydantic import BaseModel

AXES = ("yaw", "pitch", "roll")
SECONDS_PER_DAY = 86400.0
SIGMA_FLOOR_DEG = 0.005  # the estimator rounds; a reported σ of 0 would make one check all-powerful


class ForecastMethod(StrEnum):
    bent_line = "bent_line"
    theil_sen = "theil_sen"
    kalman = "kalman"


class Trend(BaseModel):
    """Where one angle is now and where it is heading."""

    level_deg: float  # the trend's value at the newest check
    level_sigma_deg: float
    slope_deg_per_day: float
    slope_sigma_deg_per_day: float
    # the level's and the slope's errors are correlated: a line's level at its newest point moves
    # with its slope (positively, the points lying before it), which the crossing time must carry
    level_slope_covariance: float = 0.0  # deg²/day
    checks: int  # conclusive checks the trend rests on
    span_days: float  # time between the oldest and the newest of them

    def significant(self, z: float = 2.0) -> bool:
        """The slope is told apart from no drift at all (z standard deviations)."""
        return abs(self.slope_deg_per_day) > z * self.slope_sigma_deg_per_day


class AxisForecast(BaseModel):
    axis: str
    trend: Trend
    days_to_threshold: float | None  # None: not heading to either threshold (or no trend)
    days_sigma: float | None


def to_days(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() / SECONDS_PER_DAY


# ----------------------------------------------------------------------------- Theil–Sen


def _median(values: np.ndarray) -> float:
    """np.median without its overhead (which dominates on a few dozen values)."""
    n = len(values)
    ranked = np.partition(values, sorted({(n - 1) // 2, n // 2}))
    return 0.5 * (float(ranked[(n - 1) // 2]) + float(ranked[n // 2]))


@functools.lru_cache(maxsize=256)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, k=1)


def theil_sen_trend(times_days: Sequence[float], values: Sequence[float], z: float = 1.0) -> Trend | None:
    """Median of pairwise slopes; σ of the slope from Sen's rank interval at ±z (z=1: one σ).

    None with fewer than 3 points or a span under an hour (no slope to speak of)."""
    t = np.asarray(times_days, dtype=float)
    y = np.asarray(values, dtype=float)
    n = len(t)
    if n < 3 or t.max() - t.min() < 1 / 24:
        return None
    i, j = _pairs(n)
    dt = t[j] - t[i]
    keep = np.abs(dt) > 1e-6
    slopes = (y[j] - y[i])[keep] / dt[keep]
    pairs = len(slopes)
    if pairs == 0:
        return None
    # Sen (1968): the interval's ends are the slopes ranked (N ∓ C)/2, C = z·sqrt(Var(Kendall S))
    c = z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    lo_k = max(0, min(pairs - 1, int(math.floor((pairs - c) / 2))))
    hi_k = max(0, min(pairs - 1, int(math.ceil((pairs + c) / 2))))
    mid = sorted({(pairs - 1) // 2, pairs // 2})
    ranked = np.partition(slopes, sorted({lo_k, hi_k, *mid}))
    slope = sum(float(ranked[k]) for k in mid) / len(mid)
    slope_sigma = max(float(ranked[hi_k] - ranked[lo_k]) / (2 * z), 1e-9)
    now = float(t.max())
    residual = y - slope * (t - now)
    level = _median(residual)
    mad = _median(np.abs(residual - level)) * 1.4826
    # the level at `now` carries the slope's uncertainty over the window's mean distance from now
    lever = now - float(t.sum()) / n
    level_sigma = math.hypot(1.2533 * mad / math.sqrt(n), slope_sigma * lever)
    return Trend(
        level_deg=level,
        level_sigma_deg=level_sigma,
        slope_deg_per_day=slope,
        slope_sigma_deg_per_day=slope_sigma,
        level_slope_covariance=slope_sigma**2 * lever,
        checks=n,
        span_days=now - float(t.min()),
    )


def bent_line_trend(
    times_days: Sequence[float],
    values: Sequence[float],
    sigmas: Sequence[float | None],
    min_span_days: float = 2.0,
    break_step_days: float = 0.25,
    outlier_z: float = 4.0,
    onset_checks: int = 3,
) -> Trend | None:
    """The trend of a camera that may have started drifting part-way through its history: a line
    that may bend once (continuous at the bend, where the drift started), fitted by least squares
    weighted by the reported σ, outliers beyond `outlier_z` σ left out and fitted again.

    A fixed window is the wrong length for most cameras: a slow drift needs days of checks for its
    slope to stand out of the noise, an onset needs the checks from before it kept out of the
    slope, and a count of checks spans twice the days on a camera that is dark at night. The bend
    keeps both: the checks before the onset still fix where the drift started, and the slope now
    rests on the checks since. The bend is searched every `break_step_days` up to `min_span_days`
    before the newest check and kept only when it beats a single line by the Bayesian information
    criterion (two more parameters: the bend's time and the older slope).

    A drift that started less than `min_span_days` ago cannot be bent to, and its checks leave the
    fit as outliers, or a bend held back to `min_span_days` half follows it. A wrong match is one
    check on a random axis, a random way; `onset_checks` of them beyond `outlier_z` σ the same way
    within the newest run of checks on one side of the line the camera followed before the bend
    are the camera moving (three, as the Kalman filter's `reset_after`), and the bend may then lie
    anywhere with `onset_checks` checks after it. A fast drift would otherwise have no forecast until
    `min_span_days` after its onset, long after it crossed."""
    t = np.asarray(times_days, dtype=float)
    y = np.asarray(values, dtype=float)
    n = len(t)
    sg = np.array([max(v or 0.0, SIGMA_FLOOR_DEG) for v in sigmas], dtype=float)
    robust = _robust_bent_line(t, y, sg, min_span_days, break_step_days, outlier_z)
    if robust is None:
        return None
    fit, keep, scale = robust
    # the newest checks against the camera as it was before the bend (the whole line when it did
    # not bend): a bend held `min_span_days` back half follows a younger drift, which would hide it
    level, slope, older_slope, bend = fit[:4]
    before = level + slope * (bend - t.max()) + older_slope * (t - bend)
    span = float(t[-1] - t[-onset_checks - 1]) if n > onset_checks else math.inf
    if span < min_span_days and _onset(y - before, np.abs(y - before) <= outlier_z * scale, onset_checks):
        # where it bends is the fit's to find, as long as `onset_checks` checks lie after it
        recent = _robust_bent_line(t, y, sg, span, break_step_days, outlier_z)
        if recent is not None:
            fit, keep, _ = recent
    return _trend(fit, t[keep])


def _robust_bent_line(
    t: np.ndarray, y: np.ndarray, sg: np.ndarray, min_span_days: float, step_days: float, outlier_z: float
) -> tuple[tuple[float, float, float, float, float, float, float], np.ndarray, np.ndarray] | None:
    """`_bent_line` with the checks beyond `outlier_z` σ of its fit left out and fitted again:
    (the fit, which checks it rests on, the σ each check's residual is measured in)."""
    if len(t) < 3 or t.max() - t.min() < 1 / 24:
        return None
    keep = np.ones(len(t), dtype=bool)
    fit, scale = None, sg
    for _ in range(3):  # fit, drop what lies beyond outlier_z σ of the fit, fit again
        fit = _bent_line(t[keep], y[keep], sg[keep], min_span_days, step_days)
        if fit is None:
            return None
        level, slope, older_slope, bend = fit[:4]
        model = level + slope * (t - t.max()) + (older_slope - slope) * np.minimum(t - bend, 0.0)
        scale = np.maximum(sg, 1.4826 * _median(np.abs(y[keep] - model[keep])))
        inliers = np.abs(y - model) <= outlier_z * scale
        if inliers.sum() < 3 or np.array_equal(inliers, keep):
            break
        keep = inliers
    return fit, keep, scale


def _trend(fit: tuple[float, float, float, float, float, float, float], used: np.ndarray) -> Trend:
    level, slope, _, bend, level_sigma, slope_sigma, covariance = fit
    return Trend(
        level_deg=level,
        level_sigma_deg=level_sigma,
        slope_deg_per_day=slope,
        slope_sigma_deg_per_day=max(slope_sigma, 1e-9),
        level_slope_covariance=covariance,
        checks=len(used),
        span_days=float(used.max() - max(float(used.min()), bend)),
    )


def _onset(residuals: np.ndarray, inliers: np.ndarray, onset_checks: int) -> bool:
    """At least `onset_checks` outliers in the newest run of checks on one side of the line. The
    run, not only its outliers in a row: a drift the fit half follows leaves some of its checks
    just inside the outlier bound."""
    side = residuals[-1] > 0
    run = 0
    while run < len(residuals) and (residuals[-1 - run] > 0) == side:
        run += 1
    return int((~inliers[len(residuals) - run :]).sum()) >= onset_checks


def _hinge_fits(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, u: np.ndarray, bends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares of y on [1, u, min(t − bend, 0)] for every candidate bend at once:
    (normal matrices (k, 3, 3), coefficients (k, 3), χ² (k,), inf where the design is singular)."""
    h = np.minimum(t[None, :] - bends[:, None], 0.0)  # (bends, n)
    g = np.empty((len(bends), 3, 3))
    b = np.empty((len(bends), 3))
    for i, ci in enumerate((np.ones_like(u), u)):
        for j, cj in enumerate((np.ones_like(u), u)):
            g[:, i, j] = float(np.sum(w * ci * cj))
        b[:, i] = float(np.sum(w * ci * y))
        g[:, i, 2] = g[:, 2, i] = (h * (w * ci)).sum(axis=1)
    g[:, 2, 2] = (h * h * w).sum(axis=1)
    b[:, 2] = (h * (w * y)).sum(axis=1)
    usable = np.abs(np.linalg.det(g)) > 1e-12 * np.maximum(np.abs(g[:, 0, 0] * g[:, 1, 1] * g[:, 2, 2]), 1e-300)
    coef = np.zeros_like(b)
    if usable.any():
        coef[usable] = np.linalg.solve(g[usable], b[usable][..., None])[..., 0]
    residual = y[None, :] - coef[:, :1] - coef[:, 1:2] * u[None, :] - coef[:, 2:3] * h
    chi2 = np.where(usable, (w[None, :] * residual**2).sum(axis=1), np.inf)
    return g, coef, chi2


def _with_bend(normal: np.ndarray, w: np.ndarray, u: np.ndarray, h: np.ndarray, change: float) -> np.ndarray:
    """The (level, slope) covariance of a bent line whose bend was fitted too: the normal matrix
    of [1, u, h] grows a fourth parameter, the bend's time, whose column is ∂model/∂bend =
    −(older slope − slope) on the checks before the bend (the asymptotic covariance of nonlinear
    least squares). A bend placed a little early or late trades against the slope after it; left
    out, the slope σ would be that of a bend known exactly."""
    d = -change * (h < 0)
    full = np.empty((4, 4))
    full[:3, :3] = normal
    for i, column in enumerate((np.ones_like(u), u, h, d)):
        full[3, i] = full[i, 3] = float((w * column * d).sum())
    try:
        return np.linalg.inv(full)[:2, :2]
    except np.linalg.LinAlgError:  # no change of slope to place a bend by: as if it were known
        return np.linalg.inv(normal)[:2, :2]


def _bent_line(
    t: np.ndarray, y: np.ndarray, sigma: np.ndarray, min_span_days: float, step_days: float
) -> tuple[float, float, float, float, float, float, float] | None:
    """(level now, slope, older slope, bend time, level σ, slope σ, level–slope covariance) of the
    weighted least-squares line through (t, y) that may bend once; the straight line when no bend
    earns its parameters.

    The bend is searched every `step_days`, then refined around the best of those to 1/144 of the
    step: a bend placed δ days off moves the fitted line by (change of slope)·δ over the days
    before the true bend, which biases the newest slope; at 0.5°/day a 3-hour offset is 0.06°,
    several times a check's σ, where 2.5 minutes are 0.001°."""
    n = len(t)
    if n < 3 or t.max() - t.min() < 1 / 24:
        return None
    now = float(t.max())
    w = 1.0 / sigma**2
    u = t - now
    line = np.array([[w.sum(), (w * u).sum()], [(w * u).sum(), (w * u * u).sum()]])
    if abs(np.linalg.det(line)) <= 1e-12 * max(abs(line[0, 0] * line[1, 1]), 1e-300):
        return None
    line_coef = np.linalg.solve(line, [(w * y).sum(), (w * u * y).sum()])
    line_chi2 = float((w * (y - line_coef[0] - line_coef[1] * u) ** 2).sum())
    first, last = float(t.min()), now - min_span_days
    bends = np.arange(last, first, -step_days)
    bic_line = n * math.log(max(line_chi2, 1e-300) / n) + 2 * math.log(n)
    best = None  # (χ², bend, normal matrix, coefficients)
    if len(bends):
        g, coef, chi2 = _hinge_fits(t, y, w, u, bends)
        k = int(np.argmin(chi2))
        # whether to bend at all is decided on the coarse grid: refined, the bend's χ² would have
        # one more continuous search to win, and the criterion would pass it on noise more often
        if math.isfinite(chi2[k]) and n * math.log(max(chi2[k], 1e-300) / n) + 4 * math.log(n) < bic_line:
            best = (float(chi2[k]), float(bends[k]), g[k], coef[k])
    if best is not None:
        for spacing in (step_days / 12, step_days / 144):
            around = best[1] + spacing * np.arange(-12, 13)
            around = around[(around > first) & (around <= last)]
            g, coef, chi2 = _hinge_fits(t, y, w, u, around)
            k = int(np.argmin(chi2))
            if chi2[k] < best[0]:
                best = (float(chi2[k]), float(around[k]), g[k], coef[k])
        chi2_best, bend, normal, (level, slope, bend_change) = best
        params = 4
        covariance = _with_bend(normal, w, u, np.minimum(t - bend, 0.0), bend_change)
    else:
        chi2_best, bend, (level, slope), bend_change = line_chi2, first, line_coef, 0.0
        params = 2
        covariance = np.linalg.inv(line)
    # σ from the fit's covariance, scaled up when the scatter exceeds what the reported σ promise
    covariance = covariance * max(1.0, chi2_best / max(n - params, 1))
    return (
        float(level),
        float(slope),
        float(slope + bend_change),
        bend,
        math.sqrt(max(covariance[0, 0], 0.0)),
        math.sqrt(max(covariance[1, 1], 0.0)),
        float(covariance[0, 1]),
    )


# ----------------------------------------------------------------------------- Kalman


@dataclass
class KalmanSettings:
    """Local linear trend: the slope wanders as a random walk of `slope_walk` °/day per √day; the
    level jumps by `level_walk` ° per √day beside the slope; innovations beyond `gate` σ are
    outliers, and `reset_after` of them in a row mean the camera really moved (start again)."""

    slope_walk: float = 0.01  # benchmarks/alert_replay.py: 0.005 lags onsets, 0.02 is noisy on slow ramps
    level_walk: float = 0.005
    gate: float = 4.0
    reset_after: int = 3
    initial_slope_sigma: float = 1.0  # °/day: no idea before the second check


@dataclass
class KalmanState:
    t: float | None = None
    level: float = 0.0
    slope: float = 0.0
    p00: float = 0.0
    p01: float = 0.0
    p11: float = 0.0
    checks: int = 0
    first_t: float | None = None
    rejected_in_a_row: int = 0


def kalman_update(state: KalmanState, t: float, value: float, sigma: float | None, s: KalmanSettings) -> KalmanState:
    """One check into the filter (in place, returned for chaining). Plain floats: a 2×2 filter in
    numpy is slower than the arithmetic."""
    r = max(sigma or 0.0, SIGMA_FLOOR_DEG) ** 2
    if state.t is None:
        state.t, state.level, state.slope = t, value, 0.0
        state.p00, state.p01, state.p11 = r, 0.0, s.initial_slope_sigma**2
        state.checks, state.first_t, state.rejected_in_a_row = 1, t, 0
        return state
    dt = max(t - state.t, 0.0)
    # predict: x = F x, P = F P Fᵀ + Q (integrated random walk on the slope, plus level noise)
    level = state.level + dt * state.slope
    p00 = state.p00 + 2 * dt * state.p01 + dt * dt * state.p11
    p01 = state.p01 + dt * state.p11
    p11 = state.p11
    q = s.slope_walk**2
    p00 += q * dt**3 / 3 + s.level_walk**2 * dt
    p01 += q * dt**2 / 2
    p11 += q * dt
    innovation = value - level
    spread = p00 + r
    if state.checks >= 3 and innovation * innovation > s.gate**2 * spread:
        state.rejected_in_a_row += 1
        if state.rejected_in_a_row >= s.reset_after:  # a real step: the old trend says nothing now
            state.t = None
            return kalman_update(state, t, value, sigma, s)
        state.t, state.level, state.p00, state.p01, state.p11 = t, level, p00, p01, p11
        return state
    k0, k1 = p00 / spread, p01 / spread
    state.level = level + k0 * innovation
    state.slope = state.slope + k1 * innovation
    state.p00 = (1 - k0) * p00
    state.p01 = (1 - k0) * p01
    state.p11 = p11 - k1 * p01
    state.t = t
    state.checks += 1
    state.rejected_in_a_row = 0
    return state


def kalman_trend(state: KalmanState) -> Trend | None:
    if state.t is None or state.checks < 3 or state.first_t is None or state.t - state.first_t < 1 / 24:
        return None
    return Trend(
        level_deg=state.level,
        level_sigma_deg=math.sqrt(max(state.p00, 0.0)),
        slope_deg_per_day=state.slope,
        slope_sigma_deg_per_day=math.sqrt(max(state.p11, 1e-18)),
        level_slope_covariance=state.p01,
        checks=state.checks,
        span_days=state.t - state.first_t,
    )


def kalman_over(
    times_days: Sequence[float], values: Sequence[float], sigmas: Sequence[float | None], s: KalmanSettings
) -> Trend | None:
    state = KalmanState()
    for t, v, sg in zip(times_days, values, sigmas, strict=True):
        kalman_update(state, t, v, sg, s)
    return kalman_trend(state)


# ----------------------------------------------------------------------------- crossing time


def days_to_threshold(trend: Trend, threshold_deg: float, z: float = 2.0) -> tuple[float | None, float | None]:
    """Days until the trend reaches ±threshold in the direction it moves, with its σ (delta method:
    the σ of the trend's value extrapolated to the crossing, level + days·slope, over the slope).

    (0, level σ/slope) when already beyond; (None, None) when the slope is not significant."""
    if not trend.significant(z):
        return None, None
    slope = trend.slope_deg_per_day
    target = threshold_deg if slope > 0 else -threshold_deg
    distance = target - trend.level_deg
    if distance * slope <= 0:  # already past the threshold it heads to
        return 0.0, trend.level_sigma_deg / abs(slope)
    days = distance / slope
    variance = (
        trend.level_sigma_deg**2 + 2 * days * trend.level_slope_covariance + (days * trend.slope_sigma_deg_per_day) ** 2
    )
    return days, math.sqrt(max(variance, 0.0)) / abs(slope)


@dataclass(frozen=True)
class TrendWindow:
    """The checks a forecast rests on at one moment: a view into a device's history (its lists are
    shared, never copied), and the Kalman filters as they stood then."""

    times: list[float]
    values: dict[str, list[float]]
    sigmas: dict[str, list[float]]
    start: int
    end: int
    filters: dict[str, KalmanState]

    def __len__(self) -> int:
        return self.end - self.start

    def trend(self, axis: str, method: ForecastMethod) -> Trend | None:
        if method is ForecastMethod.kalman:
            return kalman_trend(self.filters[axis])
        values = np.asarray(self.values[axis][self.start : self.end])
        known = np.isfinite(values)
        if known.sum() < 3:
            return None
        times = np.asarray(self.times[self.start : self.end])[known]
        if method is ForecastMethod.bent_line:
            sigmas = np.asarray(self.sigmas[axis][self.start : self.end])[known]
            return bent_line_trend(times, values[known], [v if math.isfinite(v) else None for v in sigmas])
        return theil_sen_trend(times, values[known])

    def forecast(self, threshold_deg: float, method: ForecastMethod) -> list[AxisForecast]:
        out = []
        for axis in AXES:
            trend = self.trend(axis, method)
            if trend is None:
                continue
            days, sigma = days_to_threshold(trend, threshold_deg)
            out.append(AxisForecast(axis=axis, trend=trend, days_to_threshold=days, days_sigma=sigma))
        return out


def _axis_lists() -> dict[str, list[float]]:
    return {a: [] for a in AXES}


@dataclass
class TrendHistory:
    """The recent conclusive checks of one device (the newest `window_checks` of them), and a
    Kalman filter per axis fed the same checks. Kept by the alert policy's device state, or built
    from rows.

    The lists only grow: a window is a range of them, so a `TrendWindow` taken now stays valid
    after later checks, for a forecast computed only if it turns out to matter. The dead prefix
    is dropped by starting new lists (windows taken before keep the old ones), and `clear` starts
    new lists too."""

    window_checks: int = 336
    kalman: KalmanSettings = field(default_factory=KalmanSettings)
    _times: list[float] = field(default_factory=list)
    _values: dict[str, list[float]] = field(default_factory=_axis_lists)
    _sigmas: dict[str, list[float]] = field(default_factory=_axis_lists)
    _start: int = 0
    filters: dict[str, KalmanState] = field(default_factory=lambda: {a: KalmanState() for a in AXES})

    def __len__(self) -> int:
        return len(self._times) - self._start

    def add(self, t: float, offsets: dict[str, float | None], sigmas: dict[str, float | None]) -> None:
        """One conclusive check (an axis without a value repeats none: its series just skips it)."""
        self._times.append(t)
        for axis in AXES:
            value = offsets.get(axis)
            ok = value is not None and math.isfinite(value)
            self._values[axis].append(value if ok else math.nan)
            sigma = sigmas.get(axis)
            self._sigmas[axis].append(sigma if sigma is not None and math.isfinite(sigma) else math.nan)
            if ok:
                kalman_update(self.filters[axis], t, value, sigmas.get(axis), self.kalman)
        self._start = max(self._start, len(self._times) - self.window_checks)
        if self._start > self.window_checks:  # as many dead checks as live ones: start new lists
            keep = self._start
            self._times = self._times[keep:]
            self._values = {a: v[keep:] for a, v in self._values.items()}
            self._sigmas = {a: v[keep:] for a, v in self._sigmas.items()}
            self._start = 0

    def clear(self) -> None:
        """The camera changed regime (breach declared, recovered, repaired): old checks mislead."""
        self._times, self._values, self._sigmas, self._start = [], _axis_lists(), _axis_lists(), 0
        self.filters = {a: KalmanState() for a in AXES}

    def window(self) -> TrendWindow:
        """The checks as they stand now, kept as they are whatever is added later."""
        return TrendWindow(
            times=self._times,
            values=self._values,
            sigmas=self._sigmas,
            start=self._start,
            end=len(self._times),
            filters={a: dataclasses.replace(f) for a, f in self.filters.items()},
        )

    def trend(self, axis: str, method: ForecastMethod) -> Trend | None:
        return self.window().trend(axis, method)

    def forecast(self, threshold_deg: float, method: ForecastMethod) -> list[AxisForecast]:
        return self.window().forecast(threshold_deg, method)


def soonest(forecasts: Sequence[AxisForecast]) -> AxisForecast | None:
    """The axis that reaches the threshold first (None when none is heading there)."""
    heading = [f for f in forecasts if f.days_to_threshold is not None]
    return min(heading, key=lambda f: f.days_to_threshold) if heading else None  # type: ignore[arg-type,return-value]


def fastest(forecasts: Sequence[AxisForecast]) -> AxisForecast | None:
    """The axis drifting fastest (°/day in magnitude), whether or not it is significant."""
    return max(forecasts, key=lambda f: abs(f.trend.slope_deg_per_day)) if forecasts else None


def describe(forecast: AxisForecast, threshold_deg: float) -> str:
    """'at this rate yaw reaches +0.5° in ~4.2 days (±0.8)' or the trend when it heads nowhere."""
    trend = forecast.trend
    rate = f"{trend.slope_deg_per_day:+.3f}°/day (±{trend.slope_sigma_deg_per_day:.3f})"
    if forecast.days_to_threshold is None:
        return f"{forecast.axis} trend {rate}, not heading to ±{threshold_deg:g}°"
    target = threshold_deg if trend.slope_deg_per_day > 0 else -threshold_deg
    if forecast.days_to_threshold == 0:
        return f"{forecast.axis} trend {rate}, already at {target:+g}°"
    days = forecast.days_to_threshold
    spread = forecast.days_sigma or 0.0
    when = f"~{days:.1f} days (±{spread:.1f})" if days >= 1 else f"~{days * 24:.0f} hours (±{spread * 24:.0f})"
    return f"at this rate {forecast.axis} reaches {target:+g}° in {when}; trend {rate}"
