"""The fleet view's tables from check histories: a short overview that reads at a glance in the
Dagster UI, worst device first, and the details with every number."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from calmon_core.alert_policy import AlertPolicySettings
from calmon_core.check import classify
from calmon_core.fleet_view import OVERVIEW_COLUMNS, fleet_summaries, markdown_table, overview_rows
from calmon_core.models import CalibrationResult

START = datetime(2026, 11, 20, tzinfo=UTC)


def history(device_id: str, yaw_per_hour, hours: int = 72) -> list[CalibrationResult]:
    rows = []
    for hour in range(hours):
        moment = START + timedelta(hours=hour, minutes=5)
        yaw = yaw_per_hour(hour)
        offsets = {"yaw": yaw, "pitch": -0.05, "roll": 0.02}
        rows.append(
            CalibrationResult(
                deployment_name="harbor-north-long-name",
                device_id=device_id,
                timestamp=moment,
                check_partition=(START + timedelta(hours=hour)).strftime("%Y-%m-%d-%H:00"),
                threshold_deg=0.5,
                files_location=f"s3://bucket/harbor/{device_id}/query_scan/{moment:%Y%m%dT%H%M%SZ}",
                yaw_offset=yaw,
                pitch_offset=-0.05,
                roll_offset=0.02,
                yaw_uncertainty=0.004,
                pitch_uncertainty=0.004,
                roll_uncertainty=0.004,
                success=True,
                status=classify(True, offsets, 0.5, capture_failed=False),
            )
        )
    return rows


def fleet():
    histories = {
        "cam-steady": history("cam-steady", lambda h: 0.1 + 0.001 * (h % 3)),
        "cam-drifting": history("cam-drifting", lambda h: 0.1 + 0.1 * h / 24),  # 0.1°/day, at 0.4 now
        "cam-broken": history("cam-broken", lambda h: 0.1 if h < 60 else 0.9),
    }
    return fleet_summaries(histories, AlertPolicySettings())


def test_the_overview_is_short_rows_worst_first():
    summaries = fleet()
    now = START + timedelta(hours=72)
    rows = overview_rows(summaries, now)
    assert [r["device"] for r in rows] == ["cam-broken", "cam-drifting", "cam-steady"]
    assert all(list(r) == [name for name, _ in OVERVIEW_COLUMNS] for r in rows)
    assert len(OVERVIEW_COLUMNS) <= 6
    # short enough for the UI's metadata column: no cell wraps into a paragraph
    assert max(len(cell) for r in rows for cell in r.values()) <= 20
    broken, drifting, steady = rows
    assert broken["status"].endswith("breach") and broken["worst"] == "yaw +0.900°"
    assert broken["threshold"] == "for 11 h"  # breached at the 2nd check at 0.9° (hour 61), now hour 72
    assert drifting["status"].endswith("ok") and drifting["trend"].startswith("+0.1")
    assert drifting["threshold"].startswith("in ~") and drifting["threshold"].endswith(" h")  # 0.4° now: ~1 day
    assert steady["threshold"] == "–"
    assert {r["last good"] for r in rows} == {"55 min ago"}  # the last checks ran at hour 71:05


def test_the_details_keep_every_number_the_overview_leaves_out():
    summaries = fleet()
    details = markdown_table(summaries)
    for s in summaries:
        line = next(x for x in details.splitlines() if x.startswith(f"| {s.device_id} |"))
        assert s.deployment_name in line
        assert all(f"±{s.sigmas[a]:.3f}" in line for a in ("yaw", "pitch", "roll"))


def test_a_device_beyond_the_threshold_once_is_not_shown_as_ok():
    """One check beyond the threshold is no 🚨 yet (the breach rule wants 2 in a row), but its row
    must not read ✅ ok beside a 0.9° offset: it is unconfirmed, ranked after breaches, and says how
    many checks of the rule are in."""
    histories = {
        "cam-steady": history("cam-steady", lambda h: 0.1),
        "cam-broken": history("cam-broken", lambda h: 0.1 if h < 60 else 0.9),
        "cam-just-moved": history("cam-just-moved", lambda h: 0.1 if h < 71 else 0.9),
    }
    summaries = fleet_summaries(histories, AlertPolicySettings())
    now = START + timedelta(hours=72)
    rows = {r["device"]: r for r in overview_rows(summaries, now)}
    assert list(rows) == ["cam-broken", "cam-just-moved", "cam-steady"]
    moved = rows["cam-just-moved"]
    assert moved["status"] == "🔸 unconfirmed" and moved["worst"] == "yaw +0.900°"
    assert moved["threshold"] == "1 of 2 checks"
    assert rows["cam-steady"]["status"] == "✅ ok" and rows["cam-broken"]["status"] == "🚨 breach"
    line = next(x for x in markdown_table(summaries).splitlines() if x.startswith("| cam-just-moved |"))
    assert "🔸 unconfirmed" in line and "1 of 2 checks" in line
