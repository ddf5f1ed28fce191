"""The asset checks of calibration_offsets, and the metadata of a check's result."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from calmon_assets.defs.checks.measure import Measurement
from calmon_assets.defs.metadata import image_md, reading
from calmon_assets.defs.partitions import check_partitions
from calmon_core.check import is_breach
from calmon_core.models import CalibrationResult, CheckStatus
from calmon_core.plots import offset_trend_png, thumbnail_png

CHECK_WITHIN_THRESHOLD = "within_threshold"
CHECK_CONCLUSIVE = "estimate_conclusive"
CHECK_REFERENCE_FRESH = "reference_fresh"

# Partitioned like the asset (device x time): each check is evaluated per device and check time, so
# the UI shows a breach on its own partition instead of one latest result for the whole fleet.
CHECK_SPECS = [
    dg.AssetCheckSpec(
        CHECK_WITHIN_THRESHOLD,
        asset="calibration_offsets",
        description="every |offset| within the threshold (ERROR on breach)",
        partitions_def=check_partitions,
    ),
    dg.AssetCheckSpec(
        CHECK_CONCLUSIVE,
        asset="calibration_offsets",
        description="the estimator could tell (WARN when inconclusive or failed)",
        partitions_def=check_partitions,
    ),
    dg.AssetCheckSpec(
        CHECK_REFERENCE_FRESH,
        asset="calibration_offsets",
        description="the reference scan is younger than reference_max_age_days (WARN)",
        partitions_def=check_partitions,
    ),
]


def _measured(row: CalibrationResult) -> str:
    """yaw +0.801° ± 0.001, pitch ... (the angles that were estimated)."""
    sigmas = row.uncertainties()
    return ", ".join(
        f"{axis} {value:+.3f}°" + (f" ± {sigmas[axis]:.3f}" if sigmas[axis] is not None else "")
        for axis, value in row.offsets().items()
        if value is not None
    )


def _threshold_verdict(row: CalibrationResult, breached: bool) -> str:
    where = f"{row.device_id} at {row.check_partition}"
    if not row.success:
        return f"{where}: not measured ({CheckStatus(row.status).value}), see {CHECK_CONCLUSIVE}"
    if breached:
        return f"{where}: BREACH beyond ±{row.threshold_deg}°: {_measured(row)}"
    return f"{where}: within ±{row.threshold_deg}°: {_measured(row)}"


def check_results(
    row: CalibrationResult, reference_age_days: float | None, max_age_days: float
) -> list[dg.AssetCheckResult]:
    offsets = {k: v for k, v in row.offsets().items() if v is not None}
    breached = row.success and is_breach(offsets, row.threshold_deg)
    fresh = reference_age_days is not None and reference_age_days <= max_age_days
    # every history row names its device and check time: the checks' history mixes the whole fleet
    where = {"device": row.device_id, "deployment": row.deployment_name, "check_time": row.check_partition}
    status = CheckStatus(row.status).value
    if reference_age_days is None:
        age = f"{row.device_id}: no reference scan age known"
    else:
        age = f"{row.device_id}: reference scan {reference_age_days:.1f} days old (at most {max_age_days:g})"
    return [
        dg.AssetCheckResult(
            check_name=CHECK_WITHIN_THRESHOLD,
            passed=not breached,
            severity=dg.AssetCheckSeverity.ERROR,
            description=_threshold_verdict(row, breached),
            metadata={
                **where,
                "offsets_deg": dg.MetadataValue.json(offsets),
                "uncertainty_deg": dg.MetadataValue.json(row.uncertainties()),
                "threshold": reading(row.threshold_deg, "°"),
            },
        ),
        dg.AssetCheckResult(
            check_name=CHECK_CONCLUSIVE,
            passed=row.success,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{row.device_id} at {row.check_partition}: {status}"
            + (f": {row.failure_log}" if row.failure_log else ""),
            metadata={**where, "status": status, "failure_log": row.failure_log or ""},
        ),
        dg.AssetCheckResult(
            check_name=CHECK_REFERENCE_FRESH,
            passed=fresh,
            severity=dg.AssetCheckSeverity.WARN,
            description=age,
            metadata={
                **where,
                "reference_age": reading(reference_age_days, " days", 2),
                "max_age": reading(max_age_days, " days", 0),
            },
        ),
    ]


TREND_ROWS = 48


def _trend(history: list[CalibrationResult], row: CalibrationResult) -> bytes | None:
    """The offsets of the device's last TREND_ROWS checks, this one included (history: its rows
    before this check, oldest first)."""
    earlier = [r for r in history if r.check_partition != row.check_partition]
    history = [*earlier[-(TREND_ROWS - 1) :], row]
    history.sort(key=lambda r: r.check_time())
    return offset_trend_png(
        [r.check_time() for r in history],
        {a: [getattr(r, f"{a}_offset") for r in history] for a in ("yaw", "pitch", "roll")},
        row.threshold_deg,
        f"{row.deployment_name}/{row.device_id}: last {len(history)} checks",
        {a: [getattr(r, f"{a}_uncertainty") for r in history] for a in ("yaw", "pitch", "roll")},
    )


def result_metadata(
    row: CalibrationResult, measurement: Measurement, history: list[CalibrationResult], log
) -> dict[str, Any]:
    """The check's metadata; history: the device's rows read before this check's row was written,
    oldest first (the ones its forecast was fitted on)."""
    metadata: dict[str, Any] = {
        "status": CheckStatus(row.status).value,
        "success": row.success,
        "deployment": row.deployment_name,
        "device": row.device_id,
        "check_time": row.check_partition,
        # text, not numbers: Dagster plots numeric metadata of all partitions as one line, which for
        # device x time joins every device's offsets into one zigzag (the trend picture is per device)
        "yaw_offset": reading(row.yaw_offset, "°", signed=True),
        "pitch_offset": reading(row.pitch_offset, "°", signed=True),
        "roll_offset": reading(row.roll_offset, "°", signed=True),
        "offsets_deg": dg.MetadataValue.json(row.offsets()),
        "uncertainty_deg": dg.MetadataValue.json(row.uncertainties()),
        "inliers": reading(row.inliers, "", 0),
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
