"""The alert policy on hand-made check sequences: state changes, evidence, hysteresis, gaps,
early warning, the digest, and the every_check policy's unchanged messages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from calmon_core.alert_policy import (
    AlertKind,
    AlertPolicySettings,
    DeviceState,
    MaintenanceWindow,
    alert_for_check,
    digest_due,
    fold,
    format_digest,
    parse_maintenance,
    summarize,
)
from calmon_core.alerts import format_slack_message
from calmon_core.check import classify
from calmon_core.forecast import ForecastMethod
from calmon_core.models import CalibrationResult, CheckStatus

START = datetime(2026, 11, 24, 8, 5, tzinfo=UTC)  # daytime: the default night is 18-7 UTC
POLICY = AlertPolicySettings()


def check(hour: int, yaw: float | None = 0.1, sigma: float = 0.02, status: CheckStatus | None = None, **axes):
    moment = START + timedelta(hours=hour)
    common = dict(
        deployment_name="harbor-east",
        device_id="cam-07",
        timestamp=moment,
        check_partition=moment.strftime("%Y-%m-%d-%H:00"),
        threshold_deg=0.5,
        files_location=f"s3://bucket/harbor-east/cam-07/query_scan/{moment:%Y%m%dT%H%M%SZ}",
    )
    if status in (CheckStatus.failed, CheckStatus.inconclusive):
        return CalibrationResult(**common, success=False, status=status, failure_log="camera offline")
    offsets = {"yaw": yaw, "pitch": axes.get("pitch", 0.0), "roll": axes.get("roll", 0.0)}
    return CalibrationResult(
        **common,
        yaw_offset=offsets["yaw"],
        pitch_offset=offsets["pitch"],
        roll_offset=offsets["roll"],
        yaw_uncertainty=sigma,
        pitch_uncertainty=sigma,
        roll_uncertainty=sigma,
        success=True,
        status=classify(True, offsets, 0.5, capture_failed=False),
    )


def alerts(checks: list[CalibrationResult], policy: AlertPolicySettings = POLICY) -> list[tuple[int, AlertKind]]:
    """(index, kind) of every message the sequence produces, each decided by alert_for_check on the
    checks before it, as the sensor does."""
    out = []
    for i, result in enumerate(checks):
        alert = alert_for_check(result, checks[:i], policy)
        if alert is not None:
            out.append((i, alert.kind))
    return out


def test_a_healthy_camera_produces_no_message():
    assert alerts([check(h, yaw=0.1 + 0.01 * (h % 3)) for h in range(48)]) == []


def test_a_step_is_alerted_on_the_second_check_beyond_the_threshold_and_once():
    checks = [check(h) for h in range(5)] + [check(h, yaw=0.9) for h in range(5, 12)]
    assert alerts(checks) == [(6, AlertKind.breach)]


def test_one_outlier_is_no_breach_and_two_outliers_pointing_different_ways_neither():
    single = [check(h) for h in range(10)]
    single[4] = check(4, yaw=1.3)
    assert alerts(single) == []
    two = [check(h) for h in range(10)]
    two[4], two[5] = check(4, yaw=1.3), check(5, yaw=0.1, pitch=-0.9)
    assert alerts(two) == []
    disagreeing = [check(h) for h in range(10)]
    disagreeing[4], disagreeing[5] = check(4, yaw=1.3), check(5, yaw=0.7)  # same way, 0.6° apart
    assert alerts(disagreeing) == []


def test_evidence_takes_k_sigma_off_the_offset():
    # 0.55 with σ 0.1: could well be within 0.5 -> no breach; with σ 0.02 it is beyond
    assert alerts([check(h, yaw=0.55, sigma=0.1) for h in range(6)]) == []
    assert alerts([check(h, yaw=0.55, sigma=0.02) for h in range(6)]) == [(1, AlertKind.breach)]


def test_recovery_needs_the_hysteresis_margin():
    breach = [check(h, yaw=0.8) for h in range(3)]
    in_band = [check(h, yaw=0.45) for h in range(3, 9)]  # below 0.5 but not below 0.5 − 0.1
    fixed = [check(h, yaw=0.05) for h in range(9, 12)]
    found = alerts(breach + in_band + fixed)
    assert found == [(1, AlertKind.breach), (10, AlertKind.recovered)]
    text = alert_for_check((breach + in_band + fixed)[10], (breach + in_band + fixed)[:10], POLICY).text
    assert text.startswith("✅ *harbor-east* / *cam-07*: recovered, back within 0.5°")


def test_a_camera_noisy_at_the_threshold_does_not_flap():
    values = [0.49, 0.53, 0.56, 0.47, 0.52, 0.55, 0.48, 0.51, 0.58, 0.46, 0.54, 0.49] * 3
    found = alerts([check(h, yaw=v) for h, v in enumerate(values)])
    assert [k for _, k in found] == [AlertKind.breach]


def test_failure_is_alerted_after_three_in_a_row_once_and_not_again_the_same_day():
    seq = [check(0)] + [check(h, status=CheckStatus.failed) for h in range(1, 6)]
    seq += [check(6)] + [check(h, status=CheckStatus.failed) for h in range(7, 11)]
    assert alerts(seq) == [(3, AlertKind.failing)]
    later = seq + [check(40)] + [check(h, status=CheckStatus.failed) for h in range(41, 44)]
    assert alerts(later)[-1] == (14, AlertKind.failing)  # 37 h later it is news again


def test_persistent_inconclusive_daytime_alerts_once_and_night_inconclusives_never():
    day = [check(0)] + [check(h, status=CheckStatus.inconclusive) for h in range(1, 9)]
    found = alerts(day)
    assert found == [(6, AlertKind.inconclusive)]
    assert "6 checks in a row" in alert_for_check(day[6], day[:6], POLICY).text
    night = [check(10)] + [check(h, status=CheckStatus.inconclusive) for h in range(11, 22)]  # 18:05 .. 05:05
    assert alerts(night) == []


def test_maintenance_window_checks_are_no_alert_and_no_evidence():
    window = MaintenanceWindow(
        start=START + timedelta(hours=2), end=START + timedelta(hours=5), deployment_name="harbor-east"
    )
    policy = AlertPolicySettings(maintenance=[window])
    seq = [check(0), check(1)] + [check(h, yaw=1.5) for h in range(2, 5)]
    seq += [
        check(5, status=CheckStatus.failed),
        check(6, status=CheckStatus.failed),
        check(7, status=CheckStatus.failed),
    ]
    seq += [check(8, yaw=0.9), check(9, yaw=0.9)]
    # the three failures after the window are news; the breach needs two checks after it
    assert alerts(seq, policy) == [(7, AlertKind.failing), (9, AlertKind.breach)]
    other_site = AlertPolicySettings(maintenance=[window.model_copy(update={"deployment_name": "dunes"})])
    assert alerts(seq, other_site)[0] == (3, AlertKind.breach)


def test_early_warning_once_per_episode_before_the_breach():
    # 0.1°/day from 0.05: reaches 0.5 at day 4.5; the warning horizon is 3 days
    seq = [check(h, yaw=0.05 + 0.1 * h / 24 + 0.01 * ((h * 7) % 3 - 1)) for h in range(24 * 5)]
    found = alerts(seq)
    kinds = [k for _, k in found]
    assert kinds == [AlertKind.early_warning, AlertKind.breach]
    warned_at = found[0][0] / 24
    assert 1.0 <= warned_at <= 2.0  # days to go ≈ 3 when first under the horizon
    text = alert_for_check(seq[found[0][0]], seq[: found[0][0]], POLICY).text
    assert text.startswith("⏳ *harbor-east* / *cam-07*: drifting towards the 0.5° threshold")
    assert "at this rate yaw reaches +0.5° in ~" in text


def test_decide_alert_agrees_with_the_fold():
    seq = [check(h) for h in range(4)] + [check(h, yaw=0.9) for h in range(4, 8)] + [check(h) for h in range(8, 12)]
    state = DeviceState(POLICY)
    folded = [(i, k) for i, r in enumerate(seq) if (k := state.advance(r)) is not None]
    assert folded == alerts(seq) == [(5, AlertKind.breach), (9, AlertKind.recovered)]


def test_a_rerun_of_an_old_partition_is_judged_on_what_came_before_it():
    seq = [check(h) for h in range(4)] + [check(h, yaw=0.9) for h in range(4, 8)]
    rerun = check(5, yaw=0.9)
    assert alert_for_check(rerun, seq, POLICY).kind is AlertKind.breach  # same as the first time
    assert alert_for_check(check(7, yaw=0.9), seq, POLICY) is None


def test_every_check_policy_is_todays_message_for_every_check():
    policy = AlertPolicySettings(policy="every_check")
    seq = [check(0), check(1, yaw=0.8), check(2, status=CheckStatus.inconclusive), check(3)]
    texts = [alert_for_check(r, seq[:i], policy).text for i, r in enumerate(seq)]
    assert texts[0] == format_slack_message(seq[0])
    assert texts[1] == format_slack_message(seq[1])
    assert texts[2] == format_slack_message(seq[2])
    assert texts[3] == format_slack_message(seq[3], recovered=True)
    assert texts[3].startswith("✅ *harbor-east* / *cam-07*: recovered")


def test_messages_link_the_asset_page_when_the_ui_url_is_set():
    policy = AlertPolicySettings(ui_base_url="http://dagster.example:3000/")
    seq = [check(0, yaw=0.9), check(1, yaw=0.9)]
    text = alert_for_check(seq[1], seq[:1], policy).text
    assert (
        "dagster: <http://dagster.example:3000/assets/calibration_offsets?partition=cam-07%7C2026-11-24-09%3A00>"
        in text
    )
    assert "files: s3://bucket/harbor-east/cam-07/query_scan/" in text


def test_digest_names_a_device_beyond_the_threshold_that_is_not_confirmed_yet():
    moved = fold([check(h) for h in range(10)] + [check(10, yaw=0.9)], POLICY)
    summary = summarize(moved, "harbor-east", "cam-07")
    assert (summary.status, summary.breach_evidence) == ("unconfirmed", "1 of 2 checks")
    lines = format_digest("fleet", [summary], START + timedelta(hours=11)).split("\n")
    assert lines[1] == "1 device: 1 unconfirmed"
    assert lines[2] == "🔸 beyond the threshold, not confirmed yet:"
    assert lines[3] == "  • harbor-east / cam-07: yaw +0.900° ±0.020° (1 of 2 checks)"
    # the second agreeing check declares the breach: no longer unconfirmed
    assert (
        summarize(
            fold([check(h) for h in range(10)] + [check(10, yaw=0.9), check(11, yaw=0.9)], POLICY),
            "harbor-east",
            "cam-07",
        ).status
        == "breach"
    )


def test_digest_once_a_day_from_its_hour():
    day = datetime(2026, 11, 25, tzinfo=UTC)
    assert not digest_due(day.replace(hour=7), None, POLICY)
    assert digest_due(day.replace(hour=8, minute=1), None, POLICY)
    assert not digest_due(day.replace(hour=15), day.replace(hour=8, minute=1), POLICY)
    assert digest_due(day.replace(hour=8) + timedelta(days=1), day.replace(hour=8, minute=1), POLICY)


def test_digest_lists_breaches_failures_and_the_fastest_drifting():
    breached = fold([check(h) for h in range(3)] + [check(h, yaw=-0.9) for h in range(3, 30)], POLICY)
    failing = fold([check(0)] + [check(h, status=CheckStatus.failed) for h in range(1, 5)], POLICY)
    drifting = fold([check(h, yaw=0.0 + 0.1 * h / 24 + 0.005 * (h % 2)) for h in range(48)], POLICY)
    healthy = fold([check(h, yaw=0.1) for h in range(48)], POLICY)
    summaries = [
        summarize(breached, "harbor-east", "cam-01"),
        summarize(failing, "harbor-east", "cam-02"),
        summarize(drifting, "dunes", "cam-03"),
        summarize(healthy, "dunes", "cam-04"),
    ]
    assert [s.status for s in summaries] == ["breach", "failing", "ok", "ok"]
    text = format_digest("fleet", summaries, START + timedelta(hours=48))
    lines = text.split("\n")
    assert lines[1] == "4 devices: 1 breach, 1 failing, 2 ok"
    assert any("harbor-east / cam-01: yaw -0.900° ±0.020°, since 2026-11-24 12:05 UTC" in line for line in lines)
    assert any(line.startswith("  • harbor-east / cam-02: since 2026-11-24 11:05 UTC") for line in lines)
    drift_lines = lines[lines.index(next(x for x in lines if x.startswith("📈"))) + 1 :]
    assert drift_lines[0].startswith("  • dunes / cam-03: at this rate yaw reaches +0.5°")


def test_settings_reject_impossible_values():
    with pytest.raises(ValidationError, match="breach_checks"):
        AlertPolicySettings(breach_checks=4, breach_window=3)
    with pytest.raises(ValidationError, match="night_hours"):
        AlertPolicySettings(night_hours="late")
    with pytest.raises(ValidationError, match="names a device_id or a deployment_name"):
        MaintenanceWindow(start=START, end=START + timedelta(hours=1))
    assert not AlertPolicySettings(night_hours="").is_night(START.replace(hour=23))


def test_maintenance_windows_from_the_ini_text():
    windows = parse_maintenance(
        "deployment harbor-east 2026-12-03T08:00/2026-12-03T12:00;\n device cam-07 2026-12-04T22:00Z/2026-12-05T02:00Z"
    )
    assert [(w.deployment_name, w.device_id) for w in windows] == [("harbor-east", None), (None, "cam-07")]
    assert windows[0].start == datetime(2026, 12, 3, 8, tzinfo=UTC)
    assert windows[1].covers("anywhere", "cam-07", datetime(2026, 12, 5, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match=re.escape("'site cam-07 x/y' is not 'device|deployment NAME START/END'")):
        parse_maintenance("site cam-07 x/y")
    with pytest.raises(ValueError, match="times must be ISO"):
        parse_maintenance("device cam-07 tomorrow/later")


def test_checks_are_ordered_by_partition_not_by_stamp():
    # a late capture of partition 09:00 is stamped after partition 10:00's failed row (stamped with
    # its partition's start): the schedule's order still holds
    late = check(1, yaw=0.9).model_copy(update={"timestamp": START + timedelta(hours=2, minutes=40)})
    failed = check(2, status=CheckStatus.failed).model_copy(update={"timestamp": START + timedelta(hours=2)})
    seq = [check(0, yaw=0.9), late, failed]
    state = fold(seq, POLICY)
    assert state.in_breach and state.failed_in_a_row == 1
    assert alert_for_check(late, seq, POLICY).kind is AlertKind.breach


def test_the_alerts_section_of_the_ini(tmp_path):
    from calmon_core.config import ConfigError, load_settings

    ini = tmp_path / "calibration_monitoring.ini"
    ini.write_text(
        "[alerts]\npolicy = every_check\nk_sigma = 2\nmaintenance = deployment harbor 2026-12-03T08:00/2026-12-03T12:00\n"
    )
    settings = load_settings(ini).alerts
    assert settings.policy == "every_check" and settings.k_sigma == 2
    assert settings.maintenance[0].deployment_name == "harbor"
    ini.write_text("[alerts]\nbreach_checks = 5\nmaintenance = cam-07 now/later\n")
    with pytest.raises(ConfigError) as error:
        load_settings(ini)
    text = str(error.value)
    assert f"{ini}: [alerts] maintenance: maintenance window 'cam-07 now/later'" in text
    ini.write_text("[alerts]\nbreach_checks = 5\n")
    with pytest.raises(ConfigError, match="breach_checks"):
        load_settings(ini)


def test_the_shipped_ini_loads_with_the_benchmarked_defaults():
    from pathlib import Path

    from calmon_core.config import load_settings

    shipped = load_settings(Path(__file__).resolve().parent.parent / "configs" / "calibration_monitoring.ini").alerts
    assert shipped == AlertPolicySettings(forecast_method=shipped.forecast_method, ui_base_url=shipped.ui_base_url)


def wandering(seed: int, hours: int) -> list[CalibrationResult]:
    """A camera that drifts at changing rates, is repaired when far off, and sometimes fails or
    cannot tell: every kind of check the ⏳ decision passes through."""
    rng = np.random.default_rng(seed)
    out, level, slope = [], 0.0, 0.0
    for h in range(hours):
        if rng.random() < 0.03:
            slope = float(rng.choice([0.0, rng.uniform(-0.3, 0.3), rng.uniform(0.05, 0.12), -rng.uniform(0.05, 0.12)]))
        if abs(level) > 0.7 and rng.random() < 0.05:
            level, slope = float(rng.uniform(-0.1, 0.1)), 0.0
        level += slope / 24
        u = rng.random()
        status = CheckStatus.failed if u < 0.05 else CheckStatus.inconclusive if u < 0.08 else None
        out.append(check(h, yaw=level + float(rng.normal(0, 0.01)), sigma=0.01, status=status))
    return out


@pytest.mark.parametrize("method", list(ForecastMethod))
def test_the_fold_defers_early_warning_to_the_same_decisions(method):
    # the fold forecasts only the checks that decide ⏳ (newest first); deciding at every check,
    # as a live device state does, must give the same message at every step
    policy = AlertPolicySettings(forecast_method=method, forecast_window_checks=40)  # the window slides
    kinds = []
    for seed in (1, 5):
        seq = wandering(seed, 160)
        live = DeviceState(policy)
        for i, result in enumerate(seq):
            expected = live.advance(result)
            folded = fold(seq[:i], policy)
            assert folded.advance(result) == expected, (seed, i)
            assert folded.warned == live.warned, (seed, i)
            kinds.append(expected)
    assert {AlertKind.early_warning, AlertKind.breach, AlertKind.recovered} <= set(kinds)


def test_early_warning_before_a_fast_drift_that_crosses_in_the_dark():
    # 0.45°/day from 0.2° starting at 09:00 on day 5 crosses 0.5° 16 hours later, at 01:00, with a
    # dark night between: the ten daytime checks since the onset are all a forecast gets before the
    # crossing. A bend held 2 days back reads them as outliers and forecasts nothing; the ⏳ must
    # come from them, once, before the 🚨 of the next morning
    rng = np.random.default_rng(7)
    onset = 5 * 24 + 0.9  # hours after START (08:05)
    seq = []
    for h in range(6 * 24 + 4):
        hour_of_day = (8 + h) % 24
        if hour_of_day >= 19 or hour_of_day < 7:
            seq.append(check(h, status=CheckStatus.inconclusive))
            continue
        seq.append(check(h, yaw=0.2 + 0.45 * max(h - onset, 0) / 24 + float(rng.normal(0, 0.01)), sigma=0.01))
    found = alerts(seq)
    assert [k for _, k in found] == [AlertKind.early_warning, AlertKind.breach]
    warned_at = found[0][0]
    crossing = onset + 0.3 / 0.45 * 24
    assert onset < warned_at < crossing - 6  # hours before the crossing, on the checks since the onset
    assert seq[warned_at].timestamp.hour < 19  # a daytime check: before the night, not after it
