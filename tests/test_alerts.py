"""Alert rules and the Slack text of a check."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from calmon_core.alerts import format_slack_message
from calmon_core.check import classify, is_breach
from calmon_core.models import CalibrationResult, CheckStatus

MOMENT = datetime(2026, 11, 24, 13, 2, tzinfo=UTC)


def result(**overrides) -> CalibrationResult:
    fields = dict(
        deployment_name="harbor-east",
        device_id="cam-07",
        timestamp=MOMENT,
        check_partition="2026-11-24-13:00",
        yaw_offset=0.712,
        pitch_offset=-0.05,
        roll_offset=0.02,
        yaw_uncertainty=0.004,
        pitch_uncertainty=0.006,
        roll_uncertainty=0.011,
        success=True,
        status=CheckStatus.breach,
        inliers=412,
        frames_used=3,
        threshold_deg=0.5,
        files_location="s3://camera-calibration-monitoring/harbor-east/cam-07/query_scan/20261124T130200Z",
    )
    fields.update(overrides)
    return CalibrationResult(**fields)


def test_breach_is_any_axis_strictly_above_threshold():
    assert is_breach({"yaw": 0.51, "pitch": 0.0, "roll": 0.0}, 0.5)
    assert is_breach({"yaw": 0.0, "pitch": -0.6, "roll": None}, 0.5)
    assert not is_breach({"yaw": 0.5, "pitch": -0.5, "roll": 0.5}, 0.5)
    assert not is_breach({"yaw": None, "pitch": None, "roll": None}, 0.5)
    assert not is_breach({"yaw": float("nan")}, 0.5)


@given(
    st.dictionaries(st.sampled_from(["yaw", "pitch", "roll"]), st.floats(-5, 5, allow_nan=False), min_size=1),
    st.floats(0.01, 3),
)
def test_breach_matches_largest_magnitude(offsets, threshold):
    assert is_breach(offsets, threshold) == (max(abs(v) for v in offsets.values()) > threshold)


def test_classify_covers_the_four_outcomes():
    offsets = {"yaw": 0.1, "pitch": 0.0, "roll": 0.0}
    assert classify(True, offsets, 0.5, capture_failed=False) is CheckStatus.ok
    assert classify(True, {**offsets, "roll": -0.7}, 0.5, capture_failed=False) is CheckStatus.breach
    assert classify(False, None, 0.5, capture_failed=False) is CheckStatus.inconclusive
    assert classify(True, {"yaw": None, "pitch": None, "roll": None}, 0.5, False) is CheckStatus.inconclusive
    assert classify(False, None, 0.5, capture_failed=True) is CheckStatus.failed
    assert classify(True, offsets, 0.5, capture_failed=True) is CheckStatus.failed


def test_breach_message_names_device_time_offsets_and_files():
    text = format_slack_message(result())
    assert text.startswith("🚨")
    assert "harbor-east" in text and "cam-07" in text
    assert "2026-11-24 13:02 UTC" in text and "2026-11-24-13:00" in text
    assert "yaw +0.712° ±0.004°" in text
    assert "pitch -0.050° ±0.006°" in text
    assert "roll +0.020° ±0.011°" in text
    assert "s3://camera-calibration-monitoring/harbor-east/cam-07/query_scan/20261124T130200Z" in text
    assert "412 inliers" in text


def test_ok_and_recovered_messages():
    ok = result(yaw_offset=0.1, status=CheckStatus.ok)
    assert format_slack_message(ok).startswith("✅")
    assert "recovered" not in format_slack_message(ok)
    recovered = format_slack_message(ok, recovered=True)
    assert recovered.startswith("✅") and "back within 0.5°" in recovered


def test_emoji_follows_offsets_even_if_status_disagrees():
    # a row whose status says ok but whose offsets breach is reported as the breach it is
    assert format_slack_message(result(status=CheckStatus.ok)).startswith("🚨")


def test_inconclusive_message_keeps_reason_and_unknown_axes():
    text = format_slack_message(
        result(
            success=False,
            status=CheckStatus.inconclusive,
            yaw_offset=None,
            pitch_offset=None,
            roll_offset=None,
            failure_log="only 4 inliers (need 30)",
        )
    )
    assert text.startswith("⚠️")
    assert "yaw n/a" in text and "only 4 inliers (need 30)" in text


def test_failed_message_gives_reason_and_http_files_link():
    text = format_slack_message(
        result(
            success=False,
            status=CheckStatus.failed,
            yaw_offset=None,
            pitch_offset=None,
            roll_offset=None,
            failure_log="camera offline: connection refused\n  at grab()",
            files_location=None,
        ),
        files_url="https://s3.console.aws.amazon.com/s3/buckets/x?prefix=harbor-east/cam-07/",
    )
    assert text.startswith("❌")
    assert "reason: camera offline: connection refused at grab()" in text
    assert "<https://s3.console.aws.amazon.com/s3/buckets/x?prefix=harbor-east/cam-07/>" in text
    assert "offsets" not in text


def test_failed_message_without_reason_says_so():
    text = format_slack_message(
        result(
            success=False,
            status=CheckStatus.failed,
            failure_log=None,
            yaw_offset=None,
            pitch_offset=None,
            roll_offset=None,
        )
    )
    assert "reason: no reason recorded" in text
