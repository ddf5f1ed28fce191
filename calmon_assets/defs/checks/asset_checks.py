"""The asset checks of calibration_offsets, and the metadata of a check's results: per device, and
summed up per deployment and check time (the partition)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import dagster as dg

from calmon_assets.defs.checks.measure import Measurement
from calmon_assets.defs.metadata import PREVIEW_WIDTH_PX, picture_metadata, reading
from calmon_assets.defs.partitions import check_partitions
from calmon_core.check import is_breach, worst_status
from calmon_core.models import CalibrationResult, CheckStatus
from calmon_core.plots import offset_trend_png, thumbnail_jpeg

CHECK_WITHIN_THRESHOLD = "within_threshold"
CHECK_CONCLUSIVE = "estimate_conclusive"
CHECK_REFERENCE_FRESH = "reference_fresh"

# Partitioned like the asset (deployment x time): each check is evaluated per deployment and check
# time, over its devices, so the UI shows a breach on its own partition, naming the device, instead
# of one latest result for the whole fleet.
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
    row: CalibrationResult,
    measurement: Measurement,
    history: list[CalibrationResult],
    log,
    pictures: str = "preview",
    store_picture: Callable[[bytes, str], str | None] | None = None,
) -> dict[str, Any]:
    """The check's metadata; history: the device's rows read before this check's row was written,
    oldest first (the ones its forecast was fitted on); store_picture(data, name) keeps a picture
    beside the capture and returns its URI (None: not stored)."""
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
    preview = (
        thumbnail_jpeg(measurement.diagnostic_picture, PREVIEW_WIDTH_PX) if measurement.diagnostic_picture else None
    )
    metadata.update(
        picture_metadata("diagnostic", preview, measurement.diagnostic_uri, "matches and view outlines", pictures)
    )
    try:
        trend = _trend(history, row)
    except Exception as exc:  # the plot is a convenience; the row is already written
        log.warning(f"trend plot failed: {exc}")
        trend = None
    if trend:
        trend_uri = store_picture(trend, "trend.png") if store_picture else None
        metadata.update(picture_metadata("trend", trend, trend_uri, "offset trend", pictures, "image/png"))
    log.info(f"{row.device_id} {row.check_partition}: {metadata['status']} {json.dumps(row.offsets())}")
    return metadata


# The metadata key of a deployment's per-device results: what the sensors read of a materialization.
CHECKS_KEY = "checks"
_SUMMED_UP = (CHECK_WITHIN_THRESHOLD, CHECK_CONCLUSIVE, CHECK_REFERENCE_FRESH)


def _plain(value: Any) -> Any:
    """A metadata entry's plain value (entries given as plain values already are)."""
    return value.value if isinstance(value, dg.MetadataValue) else value


def _device_of(result: dg.AssetCheckResult) -> str:
    return str(_plain((result.metadata or {}).get("device")))


def _path(value: Any) -> str | None:
    return getattr(value, "path", None) if value is not None else None


def device_summary(row: CalibrationResult, metadata: dict[str, Any]) -> dict[str, Any]:
    """One device's result as plain values, for the deployment's CHECKS_KEY metadata."""
    summary: dict[str, Any] = {
        "status": CheckStatus(row.status).value,
        "offsets_deg": row.offsets(),
        "uncertainty_deg": row.uncertainties(),
        "inliers": row.inliers,
        "failure_log": row.failure_log or "",
        "files": row.files_location or "",
    }
    for key in ("diagnostic_file", "trend_file"):
        if uri := _path(metadata.get(key)):
            summary[key] = uri
    if "correction" in metadata:
        summary["correction"] = str(metadata["correction"])
    return summary


def _cell(value: float | None, sigma: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3f}°" + (f" ± {sigma:.3f}" if sigma is not None else "")


def _devices_table(per_device: dict[str, tuple[CalibrationResult, Measurement, dict[str, Any]]]) -> str:
    lines = ["| device | status | yaw | pitch | roll | inliers | pictures / why |", "|---|---|---|---|---|---|---|"]
    for device_id, (row, _, metadata) in per_device.items():
        sigmas = row.uncertainties()
        links = [f"[{name}]({uri})" for name in ("diagnostic", "trend") if (uri := _path(metadata.get(f"{name}_file")))]
        why = (row.failure_log or "").replace("|", "/").replace("\n", " ")[:160]
        cells = [
            device_id,
            CheckStatus(row.status).value,
            *(_cell(getattr(row, f"{a}_offset"), sigmas[a]) for a in ("yaw", "pitch", "roll")),
            str(row.inliers) if row.inliers is not None else "",
            " ".join(links) or why,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def deployment_metadata(
    per_device: dict[str, tuple[CalibrationResult, Measurement, dict[str, Any]]], pictures: str = "preview"
) -> dict[str, Any]:
    """The partition's metadata: its worst status, a table of its devices, each device's result
    (CHECKS_KEY) and the pictures of its worst device."""
    rows = [row for row, _, _ in per_device.values()]
    worst = worst_status([row.status for row in rows])
    counts: dict[str, int] = {}
    for row in rows:
        counts[CheckStatus(row.status).value] = counts.get(CheckStatus(row.status).value, 0) + 1
    metadata: dict[str, Any] = {
        "status": worst.value if worst else "none",
        "statuses": ", ".join(f"{status} {n}" for status, n in sorted(counts.items())),
        "deployment": rows[0].deployment_name if rows else "",
        "check_time": rows[0].check_partition if rows else "",
        "devices": dg.MetadataValue.md(_devices_table(per_device)),
        CHECKS_KEY: dg.MetadataValue.json(
            {device_id: device_summary(row, metadata) for device_id, (row, _, metadata) in per_device.items()}
        ),
    }
    if worst is not None:
        device_id = next(d for d, (row, _, _) in per_device.items() if CheckStatus(row.status) is worst)
        metadata["worst_device"] = device_id
        device_metadata = per_device[device_id][2]
        for key in ("diagnostic", "diagnostic_file", "trend", "trend_file"):
            if key in device_metadata:
                metadata[key] = device_metadata[key]
    return metadata


def deployment_check_results(
    per_device: dict[str, tuple[CalibrationResult, Measurement, dict[str, Any]]], max_age_days: float
) -> list[dg.AssetCheckResult]:
    """Each asset check once for the partition, over its devices: passed when every device passed;
    the description names the devices that did not pass first, then the others."""
    results: dict[str, list[dg.AssetCheckResult]] = {name: [] for name in _SUMMED_UP}
    for row, measurement, _ in per_device.values():
        for result in check_results(row, measurement.reference_age_days, max_age_days):
            results[result.check_name].append(result)
    summed = []
    for name, device_results in results.items():
        if not device_results:
            continue
        failing = [r for r in device_results if not r.passed]
        lines = [r.description or "" for r in failing + [r for r in device_results if r.passed]]
        head = (
            f"{len(failing)} of {len(device_results)} device(s) did not pass"
            if failing
            else f"all {len(device_results)} device(s) passed"
        )
        first = {k: _plain(v) for k, v in (device_results[0].metadata or {}).items()}
        summed.append(
            dg.AssetCheckResult(
                check_name=name,
                passed=not failing,
                severity=device_results[0].severity,
                # one paragraph: the UI shows a description's line breaks as spaces
                description=f"{head}: " + "; ".join(lines),
                metadata={
                    "deployment": first.get("deployment", ""),
                    "check_time": first.get("check_time", ""),
                    "failing_devices": ", ".join(_device_of(r) for r in failing) or "none",
                    "devices": dg.MetadataValue.json(
                        {_device_of(r): {"passed": r.passed, "description": r.description} for r in device_results}
                    ),
                },
            )
        )
    return summed


def capture_summary_metadata(captured: list[tuple[Any, dict[str, Any]]]) -> dict[str, Any]:
    """query_capture's metadata for a deployment: a table of its devices' captures, and the first
    captured frame's preview."""
    lines = ["| device | captured | mode | frames | waited | files / why |", "|---|---|---|---|---|---|"]
    summary: dict[str, Any] = {}
    first_frame: dict[str, Any] = {}
    for outcome, metadata in captured:
        ok = outcome.ok
        where = outcome.files_location or outcome.storage_error or outcome.failure_log or ""
        waited = f"{outcome.waited_seconds:.1f} s" if outcome.waited_seconds is not None else ""
        frames = str(len(outcome.capture_positions)) if ok else ""
        cells = [outcome.device_id, "yes" if ok else "no", outcome.mode, frames, waited, where.replace("|", "/")[:160]]
        lines.append("| " + " | ".join(cells) + " |")
        summary[outcome.device_id] = {"ok": ok, "waited_seconds": outcome.waited_seconds, "files": where}
        if (telemetry := metadata.get("telemetry")) is not None:
            summary[outcome.device_id]["telemetry"] = telemetry.value
        if ok and not first_frame:
            first_frame = {k: v for k, v in metadata.items() if k in ("frame", "frame_file")}
    captured_count = sum(1 for outcome, _ in captured if outcome.ok)
    return {
        "ok": captured_count == len(captured),
        "captured": f"{captured_count} of {len(captured)}",
        "devices": dg.MetadataValue.md("\n".join(lines)),
        "captures": dg.MetadataValue.json(summary),
        **first_frame,
    }
