"""The rules of a check and of its alert, called directly with hand-made inputs: how a capture's
outcome and an estimate become the row, and whether (and how) a new row is alerted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from calmon_core.alert_policy import AlertPolicySettings
from calmon_core.alerts import AlertPolicy, ResultOrigin, decide_alert, files_link, skip_reason
from calmon_core.check import CaptureOutcome, CheckPolicy, evaluate_check, no_reference_reason
from calmon_core.models import CalibrationResult, CheckStatus

WINDOW = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
CAPTURED = WINDOW + timedelta(minutes=5, seconds=12)
POLICY = CheckPolicy(threshold_deg=0.5)
FILES = "s3://camera-calibration-monitoring/harbor/cam-1/query_scan/20261124T130000Z"


def outcome(**overrides) -> CaptureOutcome:
    fields = dict(
        deployment_name="harbor",
        device_id="cam-1",
        time_key="2026-11-24-13:00",
        query_key="20261124T130000Z",
        mode="passive",
        files_location=FILES,
        captured_at=CAPTURED,
        capture_positions=[{"yaw": 10.0, "pitch": -2.0, "roll": 0.0, "zoom": 1.0, "timestamp": 1.0}],
    )
    fields.update(overrides)
    return CaptureOutcome(**fields)


def estimate(yaw: float, success: bool = True, **extra) -> dict:
    return {
        "success": success,
        "offsets_deg": {"yaw": yaw, "pitch": 0.01, "roll": -0.02} if success else None,
        "uncertainty_deg": {"yaw": 0.004, "pitch": 0.005, "roll": 0.01} if success else None,
        "inliers": 321,
        "frames_used": 1,
        "algorithm_version": "test-1",
        "failure_log": None,
        **extra,
    }


def evaluate(capture: CaptureOutcome, est: dict | None, **kwargs) -> CalibrationResult:
    return evaluate_check(capture, est, POLICY, check_time=WINDOW, algorithm_version="test-1", run_id="r1", **kwargs)


def test_a_measured_check_is_ok_or_breach_by_the_threshold():
    ok = evaluate(outcome(), estimate(0.2))
    breach = evaluate(outcome(), estimate(-0.51))
    assert (ok.status, breach.status) == (CheckStatus.ok, CheckStatus.breach)
    assert ok.success and ok.yaw_offset == 0.2 and ok.inliers == 321 and ok.threshold_deg == 0.5
    assert ok.timestamp == CAPTURED and ok.files_location == FILES and ok.run_id == "r1"
    assert ok.capture_positions == '[{"yaw":10.0,"pitch":-2.0,"roll":0.0,"zoom":1.0}]'
    assert ok.failure_log is None


def test_the_estimator_not_telling_is_inconclusive_with_its_reason():
    row = evaluate(outcome(), estimate(0.0, success=False, failure_log="only 4 inliers (need 30)"))
    assert row.status is CheckStatus.inconclusive and not row.success
    assert row.yaw_offset is None and row.failure_log == "only 4 inliers (need 30)"


def test_a_failed_capture_is_a_failed_row_stamped_with_the_check_time():
    row = evaluate(outcome(failure_log="capture failed: camera offline", captured_at=None), None)
    assert row.status is CheckStatus.failed and not row.success
    assert row.failure_log == "capture failed: camera offline"
    assert row.timestamp == WINDOW and row.files_location is None and row.capture_positions == "[]"
    assert row.algorithm_version == "test-1"


def test_no_estimate_after_a_capture_is_a_failed_row_with_the_reason_first_then_the_notes():
    reason = no_reference_reason("cam-1", "manifest.json missing")
    row = evaluate(outcome(storage_error="files could not be stored: S3 down"), None, failure=reason)
    assert row.status is CheckStatus.failed and row.timestamp == CAPTURED and row.files_location == FILES
    assert row.failure_log == f"{reason}; files could not be stored: S3 down"
    assert row.failure_log.startswith(
        "no usable reference scan for cam-1; run `calmon collect-references --device cam-1`"
    )


def test_notes_beside_an_estimate_go_into_the_row():
    row = evaluate(
        outcome(storage_error="files could not be stored: S3 down"),
        estimate(0.7),
        notes=["reference scan taken from the local cache: timeout"],
    )
    assert row.status is CheckStatus.breach
    assert row.failure_log == "files could not be stored: S3 down; reference scan taken from the local cache: timeout"


def test_capture_outcome_reads_the_dict_older_runs_stored():
    stored = {**outcome().model_dump(), "ok": True, "captured_at": CAPTURED.isoformat()}
    assert CaptureOutcome.model_validate(stored) == outcome()
    assert not CaptureOutcome.model_validate({**stored, "ok": False, "failure_log": "capture failed: x"}).ok


def row(status: CheckStatus, yaw: float | None, minutes: int, **extra) -> CalibrationResult:
    return CalibrationResult(
        deployment_name="harbor",
        device_id="cam-1",
        timestamp=WINDOW + timedelta(minutes=minutes),
        check_partition=f"2026-11-24-13:{minutes:02d}",
        yaw_offset=yaw,
        pitch_offset=None if yaw is None else 0.0,
        roll_offset=None if yaw is None else 0.0,
        success=yaw is not None,
        status=status,
        threshold_deg=0.5,
        files_location=FILES,
        **extra,
    )


def test_an_ok_check_after_a_breach_is_a_recovery():
    history = [row(CheckStatus.breach, 0.9, 0), row(CheckStatus.failed, None, 10)]
    alert = decide_alert(row(CheckStatus.ok, 0.1, 20), history, AlertPolicy())
    assert alert is not None and alert.recovered and alert.status is CheckStatus.ok
    assert alert.text.startswith("✅ *harbor* / *cam-1*: recovered, back within 0.5°")
    plain = decide_alert(row(CheckStatus.ok, 0.1, 20), [row(CheckStatus.ok, 0.2, 0)], AlertPolicy())
    assert plain is not None and not plain.recovered and "recovered" not in plain.text


def test_later_results_do_not_make_a_recovery():
    alert = decide_alert(row(CheckStatus.ok, 0.1, 20), [row(CheckStatus.breach, 0.9, 30)], AlertPolicy())
    assert alert is not None and not alert.recovered


def test_history_is_not_read_unless_the_result_is_ok():
    def unread():
        raise AssertionError("history read for a breach")
        yield

    alert = decide_alert(row(CheckStatus.breach, 0.9, 20), unread(), AlertPolicy())
    assert alert is not None and alert.text.startswith("🚨")


def test_backfills_and_unchanged_reruns_are_not_alerted_unless_asked():
    breach = row(CheckStatus.breach, 0.9, 20)
    assert decide_alert(breach, [], AlertPolicy(), ResultOrigin(backfill=True, status="breach")) is None
    assert skip_reason(ResultOrigin(backfill=True)) == "backfill result"
    rerun = ResultOrigin(status="breach", previous_status="breach")
    assert decide_alert(breach, [], AlertPolicy(), rerun) is None
    assert skip_reason(rerun) == "same status as already alerted"
    assert decide_alert(breach, [], AlertPolicy(), ResultOrigin(status="breach", previous_status="ok")) is not None
    asked = ResultOrigin(backfill=True, realert=True, status="breach", previous_status="breach")
    assert decide_alert(breach, [], AlertPolicy(), asked) is not None


def test_files_link_uses_the_base_url_for_the_key():
    base = "https://files.example.org/calmon/"
    assert files_link(FILES, base) == "https://files.example.org/calmon/harbor/cam-1/query_scan/20261124T130000Z"
    assert files_link(FILES, base.rstrip("/")) == files_link(FILES, base)
    assert files_link(FILES, None) == FILES
    alert = decide_alert(row(CheckStatus.breach, 0.9, 20), [], AlertPolicy(files_base_url=base))
    assert alert is not None and "files: <https://files.example.org/calmon/harbor/cam-1/query_scan/" in alert.text


def test_state_change_policy_alerts_when_the_device_changes_state():
    policy = AlertPolicy(settings=AlertPolicySettings(policy="state_change", breach_checks=2, breach_window=2))
    first, second = row(CheckStatus.breach, 0.9, 0), row(CheckStatus.breach, 0.9, 10)
    assert decide_alert(first, [first], policy) is None  # one check beyond the threshold is no evidence yet
    into = decide_alert(second, [first, second], policy)
    assert into is not None and into.status is CheckStatus.breach and into.text.startswith("🚨 *harbor* / *cam-1*")
    third = row(CheckStatus.breach, 0.9, 20)
    assert decide_alert(third, [first, second, third], policy) is None  # still in breach: no repeat
    good = [row(CheckStatus.ok, 0.1, 30), row(CheckStatus.ok, 0.1, 40)]
    assert decide_alert(good[0], [first, second, third, good[0]], policy) is None
    back = decide_alert(good[1], [first, second, third, *good], policy)
    assert back is not None and back.recovered and back.status is CheckStatus.ok


def test_every_check_policy_alerts_each_check():
    policy = AlertPolicy(settings=AlertPolicySettings(policy="every_check"))
    first = row(CheckStatus.breach, 0.9, 0)
    assert not policy.state_change
    assert decide_alert(first, [first], policy) == decide_alert(first, [first], AlertPolicy())
