"""Drift forecast: Theil–Sen and the Kalman filter on hand-made series, and the crossing time."""

from __future__ import annotations

import numpy as np
import pytest

from calmon_core.forecast import (
    AxisForecast,
    ForecastMethod,
    KalmanSettings,
    KalmanState,
    Trend,
    TrendHistory,
    bent_line_trend,
    days_to_threshold,
    describe,
    kalman_over,
    kalman_trend,
    kalman_update,
    soonest,
    theil_sen_trend,
)


def trend(level: float, slope: float, level_sigma: float = 0.01, slope_sigma: float = 0.005) -> Trend:
    return Trend(
        level_deg=level,
        level_sigma_deg=level_sigma,
        slope_deg_per_day=slope,
        slope_sigma_deg_per_day=slope_sigma,
        checks=48,
        span_days=2,
    )


def test_theil_sen_recovers_an_exact_line_and_its_level_now():
    t = np.arange(0, 3, 1 / 24)
    fit = theil_sen_trend(t, 0.1 + 0.05 * t)
    assert fit.slope_deg_per_day == pytest.approx(0.05)
    assert fit.level_deg == pytest.approx(0.1 + 0.05 * t[-1])
    assert fit.checks == len(t) and fit.span_days == pytest.approx(t[-1])


def test_theil_sen_ignores_a_wild_outlier_that_a_least_squares_fit_follows():
    t = np.arange(0, 3, 1 / 24)
    y = 0.02 * t
    y[-3] += 1.5  # late: where a least-squares fit is levered most
    fit = theil_sen_trend(t, y)
    least_squares = np.polyfit(t, y, 1)[0]
    assert fit.slope_deg_per_day == pytest.approx(0.02, abs=1e-3)
    assert abs(least_squares - 0.02) > 0.01


def test_theil_sen_slope_sigma_covers_the_truth_on_noise():
    rng = np.random.default_rng(3)
    t = np.arange(0, 3, 1 / 24)
    inside = 0
    for _ in range(50):
        fit = theil_sen_trend(t, 0.1 * t + rng.normal(0, 0.02, len(t)))
        inside += abs(fit.slope_deg_per_day - 0.1) <= 2 * fit.slope_sigma_deg_per_day
    assert inside >= 44  # ~95% at two sigma


def test_theil_sen_needs_three_points_spread_over_time():
    assert theil_sen_trend([0.0, 1.0], [0.0, 0.1]) is None
    assert theil_sen_trend([0.0, 0.001, 0.002], [0.0, 0.1, 0.2]) is None


def test_bent_line_finds_a_slow_drift_after_flat_days_and_its_onset():
    rng = np.random.default_rng(11)
    t = np.arange(0, 8, 1 / 24)  # 5 days still, then 0.05°/day for 3 days
    y = 0.2 + 0.05 * np.maximum(t - 5, 0) + rng.normal(0, 0.02, len(t))
    fit = bent_line_trend(t, y, [0.02] * len(t))
    assert fit.slope_deg_per_day == pytest.approx(0.05, abs=2 * fit.slope_sigma_deg_per_day)
    assert fit.slope_sigma_deg_per_day < 0.01
    assert fit.level_deg == pytest.approx(0.35, abs=0.02)
    assert fit.span_days == pytest.approx(3, abs=1)  # the slope rests on the days since the onset
    # a fixed window of the newest 144 checks straddles the onset: half its days say "no drift"
    assert theil_sen_trend(t[-144:], y[-144:]).slope_deg_per_day < 0.04


def test_bent_line_stays_straight_on_a_ramp_and_ignores_wrong_matches():
    rng = np.random.default_rng(12)
    t = np.arange(0, 6, 1 / 24)
    y = -0.1 + 0.05 * t + rng.normal(0, 0.02, len(t))
    y[[30, 100, -5]] += (1.2, -0.9, 1.5)
    sigmas = [0.02] * len(t)
    fit = bent_line_trend(t, y, sigmas)
    assert fit.slope_deg_per_day == pytest.approx(0.05, abs=0.005)
    assert fit.checks == len(t) - 3 and fit.span_days == pytest.approx(t[-1] - t[0])
    assert bent_line_trend(t[:2], y[:2], sigmas[:2]) is None


def test_bent_line_sees_no_drift_on_a_still_camera():
    rng = np.random.default_rng(13)
    still = 0
    for _ in range(40):
        t = np.arange(0, 6, 1 / 24)
        y = 0.45 + rng.normal(0, 0.03, len(t))
        fit = bent_line_trend(t, y, [0.03] * len(t))
        still += days_to_threshold(fit, 0.5)[0] is None or days_to_threshold(fit, 0.5)[0] > 3
    assert still >= 38  # a 0.05° gap closes within 3 days only by chance


def test_bent_line_places_an_onset_between_its_search_steps():
    # the onset lies 3 hours off the 6-hour search grid; a bend left on the grid would tilt the
    # newest slope by ~0.03°/day at 0.5°/day, many times its σ on these noiseless checks
    t = np.arange(0, 8, 1 / 24)
    onset = t[-1] - 2 - 2.125
    y = 0.1 + 0.5 * np.maximum(t - onset, 0)
    fit = bent_line_trend(t, y, [0.01] * len(t))
    assert fit.slope_deg_per_day == pytest.approx(0.5, abs=1e-3)
    assert t[-1] - fit.span_days == pytest.approx(onset, abs=3 / 1440)


def test_bent_line_follows_a_drift_younger_than_its_bend_span_and_not_two_wrong_matches():
    # the bend is held 2 days back; a drift of the newest 8 hours would otherwise be 8 outliers
    rng = np.random.default_rng(14)
    t = np.arange(0, 6, 1 / 24)
    still = 0.2 + rng.normal(0, 0.01, len(t))
    sigmas = [0.01] * len(t)
    ramp = still + 0.45 * np.maximum(t - (t[-1] - 8 / 24), 0)
    fit = bent_line_trend(t, ramp, sigmas)
    assert fit.slope_deg_per_day == pytest.approx(0.45, abs=2 * fit.slope_sigma_deg_per_day)
    assert fit.slope_sigma_deg_per_day < 0.1 and fit.span_days < 0.5
    assert days_to_threshold(fit, 0.5)[0] == pytest.approx((0.5 - 0.2 - 0.45 / 3) / 0.45, abs=0.1)
    # two wrong matches in a row the same way are no onset: the still camera stays still
    wrong = still.copy()
    wrong[-2:] += 0.8
    assert days_to_threshold(bent_line_trend(t, wrong, sigmas), 0.5)[0] is None


def test_crossing_sigma_of_a_straight_fit_is_the_extrapolated_line_error():
    # least squares on a line: the σ of the crossing time is that of the line's value at the
    # crossing, σ·√(1/n + (t_cross − t̄)²/Sxx), over the slope; the level and the slope at the
    # newest check are correlated, so their σ alone in quadrature understate it
    rng = np.random.default_rng(21)
    t = np.arange(0, 4, 1 / 24)
    y = 0.1 + 0.05 * t + rng.normal(0, 0.02, len(t))
    fit = bent_line_trend(t, y, [0.02] * len(t))
    assert fit.span_days == pytest.approx(t[-1])  # no bend
    days, sigma = days_to_threshold(fit, 0.5)
    crossing = t[-1] + days
    scatter = max(
        1.0, float(np.sum((y - fit.level_deg - fit.slope_deg_per_day * (t - t[-1])) ** 2)) / 0.02**2 / (len(t) - 2)
    )
    sxx = float(np.sum((t - t.mean()) ** 2))
    expected = 0.02 * np.sqrt(scatter * (1 / len(t) + (crossing - t.mean()) ** 2 / sxx)) / fit.slope_deg_per_day
    assert sigma == pytest.approx(expected, rel=1e-6)
    assert sigma > np.hypot(fit.level_sigma_deg, days * fit.slope_sigma_deg_per_day) / fit.slope_deg_per_day


def test_bent_line_crossing_sigma_covers_the_truth_after_an_onset():
    # the bend's own uncertainty is part of the slope's: a forecast after an onset whose ± left it
    # out would miss its 2σ far more often than 5%
    rng = np.random.default_rng(22)
    inside = 0
    trials = 60
    for _ in range(trials):
        t = np.arange(0, 8, 1 / 24)  # 5 still days, then 0.3°/day: +0.5° 0.7 days after the newest
        y = -0.6 + 0.3 * np.maximum(t - 5, 0) + rng.normal(0, 0.02, len(t))
        days, sigma = days_to_threshold(bent_line_trend(t, y, [0.02] * len(t)), 0.5)
        inside += abs(days - (5 + 1.1 / 0.3 - t[-1])) <= 2 * sigma
    assert inside >= 0.88 * trials


def test_kalman_follows_a_noisy_ramp_and_rejects_an_outlier():
    rng = np.random.default_rng(5)
    t = np.arange(0, 4, 1 / 24)
    y = -0.2 + 0.1 * t + rng.normal(0, 0.02, len(t))
    y[60] += 1.2
    fit = kalman_over(t, y, [0.02] * len(t), KalmanSettings(slope_walk=0.005))
    assert fit.slope_deg_per_day == pytest.approx(0.1, abs=0.02)
    assert fit.level_deg == pytest.approx(-0.2 + 0.1 * t[-1], abs=0.03)


def test_kalman_starts_again_after_a_real_step():
    settings = KalmanSettings()
    state = KalmanState()
    for hour in range(48):
        kalman_update(state, hour / 24, 0.0, 0.01, settings)
    for hour in range(48, 54):
        kalman_update(state, hour / 24, 0.8, 0.01, settings)
    fit = kalman_trend(state)
    assert fit is not None and fit.level_deg == pytest.approx(0.8, abs=0.02)
    assert fit.checks < 10  # the old flat history no longer speaks


def test_days_to_threshold_in_the_direction_of_the_drift():
    days, sigma = days_to_threshold(trend(0.3, 0.1), 0.5)
    assert days == pytest.approx(2.0) and sigma > 0
    days, _ = days_to_threshold(trend(0.3, -0.2), 0.5)  # heading down to −0.5
    assert days == pytest.approx(4.0)
    assert days_to_threshold(trend(0.6, 0.1), 0.5)[0] == 0.0  # already past
    assert days_to_threshold(trend(0.3, 0.004, slope_sigma=0.01), 0.5) == (None, None)  # no trend


def test_crossing_sigma_grows_with_slope_uncertainty():
    _, tight = days_to_threshold(trend(0.3, 0.1, slope_sigma=0.005), 0.5)
    _, loose = days_to_threshold(trend(0.3, 0.1, slope_sigma=0.03), 0.5)
    assert loose > 3 * tight


def test_describe_says_when_and_how_sure():
    days, sigma = days_to_threshold(trend(0.3, 0.1), 0.5)
    text = describe(AxisForecast(axis="yaw", trend=trend(0.3, 0.1), days_to_threshold=days, days_sigma=sigma), 0.5)
    assert text.startswith("at this rate yaw reaches +0.5° in ~2.0 days (±")
    flat = describe(AxisForecast(axis="roll", trend=trend(0.1, 0.0), days_to_threshold=None, days_sigma=None), 0.5)
    assert "not heading" in flat


@pytest.mark.parametrize("method", list(ForecastMethod))
def test_trend_history_forecasts_the_axis_that_crosses_first(method):
    history = TrendHistory(window_checks=72)
    rng = np.random.default_rng(9)
    for hour in range(72):
        t = hour / 24
        history.add(
            t,
            {"yaw": 0.1 + 0.1 * t + rng.normal(0, 0.01), "pitch": -0.1 + rng.normal(0, 0.01), "roll": None},
            {"yaw": 0.01, "pitch": 0.01, "roll": None},
        )
    forecasts = history.forecast(0.5, method)
    assert {f.axis for f in forecasts} == {"yaw", "pitch"}  # roll was never measured
    first = soonest(forecasts)
    assert first.axis == "yaw"
    # yaw is at ~0.4 after 3 days: ~1 day to go
    assert first.days_to_threshold == pytest.approx(1.0, rel=0.2)
    history.clear()
    assert history.forecast(0.5, method) == []


def test_a_trend_window_stays_as_it_was_taken():
    # the alert policy forecasts a window taken checks ago; what was added since, and the history
    # dropping its old checks, must not change it
    rng = np.random.default_rng(4)
    rows = [
        (
            hour / 24,
            {"yaw": 0.002 * hour + rng.normal(0, 0.01), "pitch": 0.0, "roll": None},
            {"yaw": 0.01, "pitch": 0.01},
        )
        for hour in range(200)
    ]
    history = TrendHistory(window_checks=30)
    for row in rows[:50]:
        history.add(*row)
    window = history.window()
    before = window.forecast(0.5, ForecastMethod.bent_line)
    kalman_before = window.trend("yaw", ForecastMethod.kalman)
    for row in rows[50:]:  # more than twice the window: the history starts new lists
        history.add(*row)
    assert window.forecast(0.5, ForecastMethod.bent_line) == before
    assert window.trend("yaw", ForecastMethod.kalman) == kalman_before
    assert len(window) == 30 and len(history) == 30
    fresh = TrendHistory(window_checks=30)
    for row in rows[-30:]:
        fresh.add(*row)
    assert history.forecast(0.5, ForecastMethod.bent_line) == fresh.forecast(0.5, ForecastMethod.bent_line)
