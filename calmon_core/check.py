"""The rules of one check: when offsets breach, what status a check has, and how its outcome becomes
its results-table row. Every check ends as exactly one row, and every failed check becomes its row
here (failed_check)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from calmon_core.models import CalibrationResult, CheckStatus, utc_now

# The default of `[check] threshold_deg`: a camera whose |offset| exceeds this on any axis breaches.
DEFAULT_THRESHOLD_DEG = 0.5


@dataclass(frozen=True)
class CheckPolicy:
    """What a check measures against: the breach threshold in degrees."""

    threshold_deg: float = DEFAULT_THRESHOLD_DEG


def is_breach(offsets: Mapping[str, float | None], threshold_deg: float) -> bool:
    """True when any known offset exceeds the threshold in magnitude (unknown axes are ignored)."""
    return any(value is not None and math.isfinite(value) and abs(value) > threshold_deg for value in offsets.values())


def classify(
    success: bool,
    offsets: Mapping[str, float | None] | None,
    threshold_deg: float,
    capture_failed: bool,
) -> CheckStatus:
    """ok / breach / inconclusive (captured, estimator could not tell) / failed (no usable capture)."""
    if capture_failed:
        return CheckStatus.failed
    known = {k: v for k, v in (offsets or {}).items() if v is not None and math.isfinite(v)}
    if not success or not known:
        return CheckStatus.inconclusive
    return CheckStatus.breach if is_breach(known, threshold_deg) else CheckStatus.ok


def status_of(result: CalibrationResult) -> CheckStatus:
    """A row's status; for a measured row (ok or breach) its offsets decide, by the same rule as
    classify, so a row from another writer is never reported as something its numbers contradict."""
    status = CheckStatus(result.status)
    if status in (CheckStatus.ok, CheckStatus.breach):
        return classify(True, result.offsets(), result.threshold_deg, capture_failed=False)
    return status


class CaptureOutcome(BaseModel):
    """What query_capture hands calibration_offsets: where the capture is, or why there is none."""

    model_config = ConfigDict(extra="ignore")

    deployment_name: str
    device_id: str
    time_key: str  # the check's time partition
    query_key: str  # the capture's timestamp segment, query_scan/{query_key}/
    mode: str  # passive / active
    failure_log: str | None = None  # set when no usable capture was made
    storage_error: str | None = None  # captured, but the files could not be stored
    files_location: str | None = None
    local_folder: str | None = None
    captured_at: datetime | None = None
    capture_positions: list[dict[str, Any]] = []
    waited_seconds: float | None = None
    failed_stops: list[dict[str, Any]] = []

    @property
    def ok(self) -> bool:
        return self.failure_log is None


class DeploymentCaptures(BaseModel):
    """What query_capture hands calibration_offsets for one deployment and check time: each
    device's capture outcome, by device id."""

    model_config = ConfigDict(extra="ignore")

    deployment_name: str
    time_key: str
    outcomes: dict[str, CaptureOutcome] = {}


# The order a deployment's statuses are summed up in: its run and its partition show the worst.
_WORST_FIRST = (CheckStatus.breach, CheckStatus.failed, CheckStatus.inconclusive, CheckStatus.ok)


def worst_status(statuses: Sequence[str | CheckStatus]) -> CheckStatus | None:
    """The status a group of checks is summed up by (a breach before a failure before an
    inconclusive check before ok); None for no checks."""
    present = {CheckStatus(s) for s in statuses}
    return next((s for s in _WORST_FIRST if s in present), None)


def no_reference_reason(device_id: str, detail: object) -> str:
    # the advice before the details: Slack shortens long reasons from the end
    return f"no usable reference scan for {device_id}; run `calmon collect-references --device {device_id}` ({detail})"


def _positions(frames: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps([{k: f.get(k) for k in ("yaw", "pitch", "roll", "zoom")} for f in frames], separators=(",", ":"))


def failed_check(
    *,
    deployment_name: str,
    device_id: str,
    check_partition: str,
    reason: str,
    mode: str,
    threshold_deg: float = DEFAULT_THRESHOLD_DEG,
    timestamp: datetime | None = None,
    files_location: str | None = None,
    capture_positions: Sequence[Mapping[str, Any]] = (),
    algorithm_version: str = "",
    run_id: str | None = None,
) -> CalibrationResult:
    """The row of a check that produced no estimate (camera offline, never stable, no reference...)."""
    return CalibrationResult(
        deployment_name=deployment_name,
        device_id=device_id,
        timestamp=timestamp or utc_now(),
        check_partition=check_partition,
        mode=mode,
        capture_positions=_positions(capture_positions),
        files_location=files_location,
        success=False,
        status=CheckStatus.failed,
        failure_log=reason,
        threshold_deg=threshold_deg,
        algorithm_version=algorithm_version,
        run_id=run_id,
    )


def estimated_check(
    *,
    deployment_name: str,
    device_id: str,
    check_partition: str,
    estimate: Mapping[str, Any],
    mode: str,
    timestamp: datetime,
    files_location: str | None,
    capture_positions: Sequence[Mapping[str, Any]],
    threshold_deg: float,
    notes: Sequence[str] = (),
    run_id: str | None = None,
    gauge_id: str | None = None,
) -> CalibrationResult:
    """The row of a check whose capture reached the estimator.

    `estimate` is the estimator's JSON object (capture-format.md's `calmon estimate` contract).
    `notes` are problems that did not stop the estimate (e.g. files that could not be stored);
    they go into failure_log so nobody misses them.
    """
    success = bool(estimate.get("success"))
    offsets = estimate.get("offsets_deg") or {}
    sigma = estimate.get("uncertainty_deg") or {}
    log_parts = [p for p in [estimate.get("failure_log"), *notes] if p]
    return CalibrationResult(
        deployment_name=deployment_name,
        device_id=device_id,
        timestamp=timestamp,
        check_partition=check_partition,
        yaw_offset=offsets.get("yaw") if success else None,
        pitch_offset=offsets.get("pitch") if success else None,
        roll_offset=offsets.get("roll") if success else None,
        yaw_uncertainty=sigma.get("yaw") if success else None,
        pitch_uncertainty=sigma.get("pitch") if success else None,
        roll_uncertainty=sigma.get("roll") if success else None,
        mode=mode,
        capture_positions=_positions(capture_positions),
        files_location=files_location,
        success=success,
        status=classify(success, offsets if success else None, threshold_deg, capture_failed=False),
        failure_log="; ".join(log_parts) or None,
        inliers=estimate.get("inliers"),
        frames_used=estimate.get("frames_used"),
        threshold_deg=threshold_deg,
        algorithm_version=estimate.get("algorithm_version", ""),
        run_id=run_id,
        gauge_id=estimate.get("gauge_id") or gauge_id,
        # a plain day estimate against the original reference does not name them
        lighting_regime=estimate.get("regime", "day"),
        bank_entry=estimate.get("bank_entry", "reference" if success else None),
    )


def evaluate_check(
    outcome: CaptureOutcome,
    estimate: Mapping[str, Any] | None,
    policy: CheckPolicy,
    *,
    check_time: datetime,
    algorithm_version: str,
    failure: str | None = None,
    notes: Sequence[str] = (),
    run_id: str | None = None,
    gauge_id: str | None = None,
) -> CalibrationResult:
    """The row of one check, whatever happened.

    `outcome` is the capture; `estimate` the estimator's JSON object, or None when there is none,
    with `failure` saying why (reference missing, query unreadable). `notes` are problems that did
    not stop the check (a reference taken from the local cache); the capture's own storage error
    comes first. `check_time` (the partition's start) stamps rows that have no capture time.
    """
    common: dict[str, Any] = {
        "deployment_name": outcome.deployment_name,
        "device_id": outcome.device_id,
        "check_partition": outcome.time_key,
        "mode": outcome.mode,
        "threshold_deg": policy.threshold_deg,
        "run_id": run_id,
    }
    if not outcome.ok:
        return failed_check(
            **common,
            reason=outcome.failure_log or "capture failed",
            timestamp=check_time,
            algorithm_version=algorithm_version,
        )
    all_notes = [n for n in [outcome.storage_error, *notes] if n]
    captured: dict[str, Any] = {
        "timestamp": outcome.captured_at or check_time,
        "files_location": outcome.files_location,
        "capture_positions": outcome.capture_positions,
    }
    if estimate is None:
        reason = "; ".join([failure or "no estimate", *all_notes])
        return failed_check(**common, **captured, reason=reason, algorithm_version=algorithm_version)
    return estimated_check(**common, **captured, estimate=estimate, notes=all_notes, gauge_id=gauge_id)
