"""The asset checks of calibration_offsets, and the metadata of a check's result."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from calmon_assets.defs.checks.measure import Measurement
from calmon_assets.defs.metadata import image_md
from calmon_core.check import is_breach
from calmon_core.models import CalibrationResult, CheckStatus
from calmon_core.plots import offset_trend_png, thumbnail_png

CHECK_WITHIN_THRESHOLD = "within_threshold"
CHECK_CONCLUSIVE = "estimate_conclusive"
CHECK_REFERENCE_FRESH = "reference_fresh"

CHECK_SPECS = [
    dg.AssetCheckSpec(
        CHECK_WITHIN_THRESHOLD,
        asset="calibration_offsets",
        description="every |offset| within the threshold (ERROR on breach)",
    ),
    dg.AssetCheckSpec(
        CHECK_CONCLUSIVE,
        asset="calibration_offsets",
        description="the estimator could tell (WARN when inconclusive or failed)",
    ),
    dg.AssetCheckSpec(
        CHECK_REFERENCE_FRESH,
        asset="calibration_offsets",
        description="the reference scan is younger than reference_max_age_days (WARN)",
    ),
]


def check_results(
    row: CalibrationResult, reference_age_days: float | None, max_age_days: float
) -> list[dg.AssetCheckResult]:
    offsets = {k: v for k, v in row.offsets().items() if v is not None}
    age = round(reference_age_days, 2) if reference_age_days is not None else -1.0
    return [
        dg.AssetCheckResult(
            check_name=CHECK_WITHIN_THRESHOLD,
            passed=not (row.success and is_breach(offsets, row.threshold_deg)),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"offsets_deg": dg.MetadataValue.json(offsets), "threshold_deg": row.threshold_deg},
        ),
        dg.AssetCheckResult(
            check_name=CHECK_CONCLUSIVE,
            passed=row.success,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"status": CheckStatus(row.status).value, "failure_log": row.failure_log or ""},
        ),
        dg.AssetCheckResult(
            check_name=CHECK_REFERENCE_FRESH,
            passed=reference_age_days is not None and reference_age_days <= max_age_days,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"reference_age_days": age, "max_age_days": max_age_days},
        ),
    ]


TREND_ROWS = 48


def _trend(history: list[CalibrationResult], row: CalibrationResult) -> bytes | None:
    """The offsets of the device's last TREND_ROWS checks, this one included (history: its rows
    before this check, oldest first)."""
    earlier = [r for r in history if r.check_partition != row.check_partition]
    history = [*earlier[-(TREND_ROWS - 1) :], row]
    history.sort(key=lambda r: r.timestamp)
    return offset_trend_png(
        [r.timestamp for r in history],
        {a: [getattr(r, f"{a}_offset") for r in history] for a in ("yaw", "pitch", "roll")},
        row.threshold_deg,
        f"{row.deployment_name}/{row.device_id}: last {len(history)} checks",
        {a: [getattr(r, f"{a}_uncertainty") for r in history] for a in ("yaw", "pitch", "roll")},
    )


def _degrees(value: float | None) -> float:
    return value if value is not None else float("nan")


def result_metadata(
    row: CalibrationResult, measurement: Measurement, history: list[CalibrationResult], log
) -> dict[str, Any]:
    """The check's metadata; history: the device's rows read before this check's row was written,
    oldest first (the ones its forecast was fitted on)."""
    metadata: dict[str, Any] = {
        "status": CheckStatus(row.status).value,
        "success": row.success,
        "deployment": row.deployment_name,
        "yaw_offset_deg": _degrees(row.yaw_offset),
        "pitch_offset_deg": _degrees(row.pitch_offset),
        "roll_offset_deg": _degrees(row.roll_offset),
        "uncertainty_deg": dg.MetadataValue.json(row.uncertainties()),
        "inliers": row.inliers or 0,
        "algorithm_version": row.algorithm_version,
        "failure_log": row.failure_log or "",
        "files": row.files_location or "",
    }
    if measurement.estimate is not None:
        metadata["frames"] = dg.MetadataValue.json(measurement.estimate.get("frames", []))
    if measurement.diagnostic_png:
        metadata["diagnostic"] = image_md(thumbnail_png(measurement.diagnostic_png, 1000), "matches and view outlines")
    try:
        trend = _trend(history, row)
        if trend:
            metadata["trend"] = image_md(trend, "offset trend", "image/png")
    except Exception as exc:  # the plot is a convenience; the row is already written
        log.warning(f"trend plot failed: {exc}")
    log.info(f"{row.device_id} {row.check_partition}: {metadata['status']} {json.dumps(row.offsets())}")
    return metadata
