"""Turning the outcome of one check into its results-table row. Every check ends as exactly one row."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from calmon_core.models import CalibrationResult, CheckStatus, utc_now


def _positions(frames: list[dict[str, Any]]) -> str:
    return json.dumps([{k: f.get(k) for k in ("yaw", "pitch", "roll", "zoom")} for f in frames], separators=(",", ":"))


def failed_check(
    *,
    deployment_name: str,
    device_id: str,
    check_partition: str,
    reason: str,
    mode: str,
    timestamp: datetime | None = None,
    files_location: str | None = None,
    capture_positions: list[dict[str, Any]] | None = None,
    threshold_deg: float = 0.5,
    algorithm_version: str = "",
    run_id: str | None = None,
) -> CalibrationResult:
    """The row of a check that produced no usable capture (camera offline, never stable, ...)."""
    return CalibrationResult(
        deployment_name=deployment_name,
        device_id=device_id,
        timestamp=timestamp or utc_now(),
        check_partition=check_partition,
        mode=mode,
        capture_positions=_positions(capture_positions or []),
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
    estimate: dict[str, Any],
    mode: str,
    timestamp: datetime,
    files_location: str | None,
    capture_positions: list[dict[str, Any]],
    threshold_deg: float = 0.5,
    notes: list[str] | None = None,
    run_id: str | None = None,
) -> CalibrationResult:
    """The row of a check whose capture reached the estimator.

    `estimate` is the estimator's JSON object (capture-format.md's `calmon estimate` contract).
    `notes` are problems that did not stop the estimate (e.g. files that could not be stored);
    they go into failure_log so nobody misses them.
    """
    from calmon_core.alerts import classify

    success = bool(estimate.get("success"))
    offsets = estimate.get("offsets_deg") or {}
    sigma = estimate.get("uncertainty_deg") or {}
    log_parts = [p for p in [estimate.get("failure_log"), *(notes or [])] if p]
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
    )


def status_of(result: CalibrationResult) -> CheckStatus:
    return CheckStatus(result.status)
