"""calmon's assets: reference_scan (per device), query_capture and calibration_offsets (device x time).

Thin by design: each asset wires calmon_core and the resources; the rules live in calmon_core.
"""

import base64
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from calmon_assets.cpu_slots import CPU_SLOTS
from calmon_assets.partitions import (
    DEVICE_DIM,
    TIME_DIM,
    check_partitions,
    check_time_partitions,
    device_partitions,
)
from calmon_assets.site import SiteConfigResource
from calmon_assets.wiring import device_extractor
from calmon_core.alerts import is_breach
from calmon_core.capture_format import CaptureFormatError, read_capture
from calmon_core.check_result import estimated_check, failed_check
from calmon_core.estimation import ALGORITHM_VERSION, ReferenceScanError, estimate_offsets
from calmon_core.features import build_reference_features
from calmon_core.layout import format_timestamp, query_scan_prefix, reference_scan_prefix
from calmon_core.models import CalibrationResult, CheckStatus
from calmon_core.plots import contact_sheet, offset_trend_png, thumbnail_png
from resources.camera import CameraResource
from resources.kubectl import KubectlResource
from resources.mqtt import MqttResource
from resources.object_store import ObjectStoreResource
from resources.results_table import ResultsTableResource

GROUP = "calibration"
CHECK_WITHIN_THRESHOLD = "within_threshold"
CHECK_CONCLUSIVE = "estimate_conclusive"
CHECK_REFERENCE_FRESH = "reference_fresh"


def _image_md(data: bytes, alt: str, mime: str = "image/jpeg") -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:{mime};base64,{base64.b64encode(data).decode()})")


def _workdir(settings_workdir: str, *parts: str) -> Path:
    path = Path(settings_workdir, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- reference_scan


@dg.asset(
    partitions_def=device_partitions,
    group_name=GROUP,
    kinds={"python", "s3"},
    description="The device's reference scan: frames over its pose grid, telemetry and local "
    "features (COLMAP database), stored under {deployment}/{camera}/reference_scan/.",
)
def reference_scan(
    context: dg.AssetExecutionContext,
    site: SiteConfigResource,
    kubectl: KubectlResource,
    mqtt: MqttResource,
    camera: CameraResource,
    object_store: ObjectStoreResource,
) -> dg.MaterializeResult:
    device_id = context.partition_key
    config = site.load()
    deployment, device = config.fleet.find(device_id)
    capture_settings = config.settings.capture
    work = _workdir(capture_settings.workdir, deployment.name, device_id, "reference_runs")
    started = time.monotonic()
    grid = device.reference_grid.poses()

    def progress(done: int, total: int) -> None:
        context.log.info(f"{device_id}: reference frame {done}/{total}")

    with device_extractor(config, deployment, device, kubectl, mqtt, camera, work) as extractor:
        scan = extractor.capture_reference(
            device_id,
            stabilize_time=capture_settings.reference_stabilize_time,
            timeout=capture_settings.timeout,
            progress=progress,
        )
    with CPU_SLOTS:
        summary = build_reference_features(scan.folder)
    store = object_store.get_client()
    prefix = reference_scan_prefix(deployment.name, device_id)
    store.upload_folder(Path(scan.folder), prefix)
    sheet = contact_sheet(scan.folder)
    capture = read_capture(scan.folder)
    yaws = [f.telemetry.yaw for f in capture.frames]
    pitches = [f.telemetry.pitch for f in capture.frames]
    return dg.MaterializeResult(
        metadata={
            "frames": len(capture.frames),
            "grid_poses": len(grid),
            "coverage": f"yaw {min(yaws):+.1f}..{max(yaws):+.1f}°, pitch {min(pitches):+.1f}..{max(pitches):+.1f}°",
            "keypoints": int(summary.get("keypoints", 0)),
            "features": dg.MetadataValue.json(summary),
            "files": dg.MetadataValue.url(store.uri(prefix)),
            "seconds": round(time.monotonic() - started, 1),
            "contact_sheet": _image_md(thumbnail_png(sheet, 1200), "reference contact sheet"),
        }
    )


# --------------------------------------------------------------------------- query_capture


def _partition(context: dg.AssetExecutionContext) -> tuple[str, str, datetime]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    window = check_time_partitions.time_window_for_partition_key(keys[TIME_DIM])
    return keys[DEVICE_DIM], keys[TIME_DIM], window.start.astimezone(UTC)


@dg.asset(
    partitions_def=check_partitions,
    group_name=GROUP,
    kinds={"python", "s3"},
    description="One query capture for a check: frames taken once the camera's telemetry was "
    "still (passive) or at each PTZ stop (active), stored under query_scan/{timestamp}/. The value "
    "is the capture's outcome, which calibration_offsets turns into a results row.",
)
def query_capture(
    context: dg.AssetExecutionContext,
    site: SiteConfigResource,
    kubectl: KubectlResource,
    mqtt: MqttResource,
    camera: CameraResource,
    object_store: ObjectStoreResource,
) -> dg.Output[dict]:
    from calmon_core.extraction import CaptureFailed
    from resources.camera import CameraError
    from resources.kubectl import KubectlError
    from resources.object_store import ObjectStoreError

    device_id, time_key, window_start = _partition(context)
    config = site.load()
    deployment, device = config.fleet.find(device_id)
    capture_settings = config.settings.capture
    stamp = format_timestamp(window_start)
    prefix = query_scan_prefix(deployment.name, device_id, stamp)
    stops = list(device.active_ptz_stops or capture_settings.active_ptz_stops) if device.mode == "active" else []
    stabilize = device.stabilize_time if device.stabilize_time is not None else capture_settings.stabilize_time
    outcome: dict[str, Any] = {
        "deployment_name": deployment.name,
        "device_id": device_id,
        "time_key": time_key,
        "query_key": stamp,
        "mode": "active" if stops else "passive",
        "ok": False,
        "failure_log": None,
        "storage_error": None,
        "files_location": None,
        "local_folder": None,
        "captured_at": None,
        "capture_positions": [],
        "waited_seconds": None,
    }
    work = _workdir(capture_settings.workdir, deployment.name, device_id, "query_scan")
    started = time.monotonic()
    try:
        with device_extractor(config, deployment, device, kubectl, mqtt, camera, work) as extractor:
            capture = extractor.extract_query(
                device_id,
                stabilize_time=int(stabilize) if float(stabilize).is_integer() else stabilize,  # type: ignore[arg-type]
                timeout=int(capture_settings.timeout) if capture_settings.timeout else None,
                active_ptz_stops=stops,
            )
    except (CaptureFailed, CameraError, KubectlError) as exc:
        # capture and camera errors name the device already; kubectl's name only the cluster side
        where = f"device {device_id}: " if isinstance(exc, KubectlError) else ""
        outcome["failure_log"] = f"capture failed: {where}{exc}"
        outcome["waited_seconds"] = round(time.monotonic() - started, 1)
        context.log.warning(f"{device_id} {time_key}: {outcome['failure_log']}")
        return dg.Output(
            outcome,
            metadata={"ok": False, "failure_log": outcome["failure_log"], "waited_seconds": outcome["waited_seconds"]},
        )

    moved = {
        k: capture.telemetry_summary[k]
        for k in ("camera_reresolved", "telemetry_reresolved")
        if capture.telemetry_summary.get(k)
    }
    if moved:
        context.log.warning(
            f"{device_id} {time_key}: connection lost mid-check and restored at a "
            f"re-resolved address (port-forward restarted): {moved}"
        )

    folder = work / stamp
    if folder.exists():
        shutil.rmtree(folder)
    shutil.move(str(capture.folder), folder)
    manifest = read_capture(folder)
    outcome.update(
        ok=True,
        local_folder=str(folder.resolve()),
        captured_at=manifest.frames[0].captured_at.isoformat() if manifest.frames else None,
        capture_positions=[f.telemetry.model_dump() for f in manifest.frames],
        waited_seconds=round(capture.waited_seconds, 1),
        failed_stops=capture.failed_stops,
    )
    store = object_store.get_client()
    try:
        store.upload_folder(folder, prefix)
        outcome["files_location"] = store.uri(prefix)
    except ObjectStoreError as exc:
        outcome["storage_error"] = f"files could not be stored: {exc}"
        context.log.warning(f"{device_id} {time_key}: {outcome['storage_error']}")
    metadata: dict[str, Any] = {
        "ok": True,
        "mode": outcome["mode"],
        "frames": len(manifest.frames),
        "waited_seconds": outcome["waited_seconds"],
        "telemetry": dg.MetadataValue.json(capture.telemetry_summary),
        "files": outcome["files_location"] or outcome["storage_error"],
    }
    if manifest.frames:
        first = (folder / manifest.frames[0].image).read_bytes()
        metadata["frame"] = _image_md(thumbnail_png(first), "query frame")
    return dg.Output(outcome, metadata=metadata)


# --------------------------------------------------------------------------- calibration_offsets


def _reference_folder(store, deployment: str, device_id: str, cache_root: Path) -> tuple[Path, str | None]:
    """The device's reference scan in a local cache, refreshed when the stored manifest changed.

    While the store cannot be reached the cached copy serves, with a note for the row saying so.
    """
    from resources.object_store import ObjectNotFoundError, ObjectStoreError

    prefix = reference_scan_prefix(deployment, device_id)
    local = cache_root / deployment / device_id / "reference_scan"
    cached = local / "manifest.json"
    try:
        remote_manifest = store.get_bytes(f"{prefix}/manifest.json")
    except ObjectNotFoundError:
        raise  # deleted on purpose or never collected: a cached copy must not hide that
    except ObjectStoreError as exc:
        if cached.is_file():
            return local, f"reference scan taken from the local cache: {exc}"
        raise
    if not (cached.is_file() and cached.read_bytes() == remote_manifest):
        if local.exists():
            shutil.rmtree(local)
        store.download_folder(prefix, local)
    return local, None


def _no_reference(device_id: str, exc: Exception) -> str:
    # the advice before the details: Slack shortens long reasons from the end
    return f"no usable reference scan for {device_id}; run `calmon collect-references --device {device_id}` ({exc})"


def _query_folder(store, outcome: dict, cache_root: Path) -> Path:
    local = outcome.get("local_folder")
    if local and (Path(local) / "manifest.json").is_file():
        return Path(local)
    prefix = query_scan_prefix(outcome["deployment_name"], outcome["device_id"], outcome["query_key"])
    target = cache_root / outcome["deployment_name"] / outcome["device_id"] / "query_scan" / outcome["query_key"]
    if target.exists():
        shutil.rmtree(target)
    return store.download_folder(prefix, target)


def _trend(results_table, row: CalibrationResult, limit: int = 48) -> bytes | None:
    history = results_table.history(row.device_id, limit=limit)
    history = [r for r in history if r.check_partition != row.check_partition] + [row]
    history.sort(key=lambda r: r.timestamp)
    if not history:
        return None
    return offset_trend_png(
        [r.timestamp for r in history],
        {a: [getattr(r, f"{a}_offset") for r in history] for a in ("yaw", "pitch", "roll")},
        row.threshold_deg,
        f"{row.deployment_name}/{row.device_id}: last {len(history)} checks",
        {a: [getattr(r, f"{a}_uncertainty") for r in history] for a in ("yaw", "pitch", "roll")},
    )


@dg.asset(
    partitions_def=check_partitions,
    group_name=GROUP,
    kinds={"python", "iceberg"},
    ins={"query_capture": dg.AssetIn()},
    deps=[
        dg.AssetDep(
            "reference_scan",
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=DEVICE_DIM),
        )
    ],
    check_specs=[
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
    ],
    description="The check's result: pitch/yaw/roll offsets (true − reported) estimated from the "
    "query capture against the reference scan, written as one row of the results table "
    "(idempotent per device and check time).",
)
def calibration_offsets(
    context: dg.AssetExecutionContext,
    query_capture: dict,
    site: SiteConfigResource,
    object_store: ObjectStoreResource,
    results_table: ResultsTableResource,
) -> dg.MaterializeResult:
    device_id, time_key, window_start = _partition(context)
    config = site.load()
    threshold = config.settings.slack.threshold_deg
    cache_root = _workdir(config.settings.capture.workdir, "cache")
    store = object_store.get_client()
    table = results_table.get_client()
    outcome = query_capture
    common = {
        "deployment_name": outcome["deployment_name"],
        "device_id": device_id,
        "check_partition": time_key,
        "mode": outcome["mode"],
        "threshold_deg": threshold,
        "run_id": context.run.run_id,
    }
    captured_at = datetime.fromisoformat(outcome["captured_at"]) if outcome.get("captured_at") else None
    reference_age_days: float | None = None
    diagnostic: bytes | None = None
    estimate: dict[str, Any] | None = None

    # problems that did not stop the check still go into its row, whatever its outcome
    notes = [outcome["storage_error"]] if outcome.get("storage_error") else []

    def with_notes(reason: str) -> str:
        return "; ".join([reason, *notes])

    if not outcome["ok"]:
        row = failed_check(
            **common, reason=outcome["failure_log"], timestamp=window_start, algorithm_version=ALGORITHM_VERSION
        )
    else:
        from resources.object_store import ObjectNotFoundError, ObjectStoreError

        try:
            reference, reference_note = _reference_folder(store, outcome["deployment_name"], device_id, cache_root)
            reference_age_days = (datetime.now(UTC) - read_capture(reference).started_at).total_seconds() / 86400
            notes += [reference_note] if reference_note else []
        except ObjectNotFoundError as exc:
            reference, reason = None, _no_reference(device_id, exc)
        except ObjectStoreError as exc:  # the scan may be fine: nothing for the user to redo
            reference = None
            reason = f"reference scan for {device_id} could not be fetched, the object store is unreachable ({exc})"
        except Exception as exc:  # unreadable reference: the check still gets its row
            reference, reason = None, _no_reference(device_id, exc)
        if reference is None:
            row = failed_check(
                **common,
                reason=with_notes(reason),
                timestamp=captured_at or window_start,
                files_location=outcome["files_location"],
                capture_positions=outcome["capture_positions"],
                algorithm_version=ALGORITHM_VERSION,
            )
        else:
            try:
                query = _query_folder(store, outcome, cache_root)
                diag_dir = query / "diagnostics"
                with CPU_SLOTS:
                    result = estimate_offsets(reference, query, threshold_deg=threshold, diagnostics_dir=diag_dir)
                estimate = result.to_json_dict()
                pngs = sorted(diag_dir.glob("*.png"))
                if pngs:
                    diagnostic = pngs[0].read_bytes()
                    if outcome["files_location"]:
                        for png in pngs:
                            try:
                                store.put_file(
                                    f"{query_scan_prefix(outcome['deployment_name'], device_id, outcome['query_key'])}/diagnostics/{png.name}",
                                    png,
                                )
                            except Exception as exc:  # a missing picture must not lose the row
                                context.log.warning(f"diagnostic picture not stored: {exc}")
                row = estimated_check(
                    **common,
                    estimate=estimate,
                    timestamp=captured_at or window_start,
                    files_location=outcome["files_location"],
                    capture_positions=outcome["capture_positions"],
                    notes=notes,
                )
            except ReferenceScanError as exc:
                shutil.rmtree(reference, ignore_errors=True)  # a corrupt copy must not outlive its repair
                row = failed_check(
                    **common,
                    reason=with_notes(_no_reference(device_id, exc)),
                    timestamp=captured_at or window_start,
                    files_location=outcome["files_location"],
                    capture_positions=outcome["capture_positions"],
                    algorithm_version=ALGORITHM_VERSION,
                )
            except CaptureFormatError as exc:
                row = failed_check(
                    **common,
                    reason=with_notes(f"query capture unreadable: {exc}"),
                    timestamp=captured_at or window_start,
                    files_location=outcome["files_location"],
                    capture_positions=outcome["capture_positions"],
                    algorithm_version=ALGORITHM_VERSION,
                )

    table.write([row])
    status = CheckStatus(row.status)
    max_age = config.settings.schedule.reference_max_age_days
    offsets = {k: v for k, v in row.offsets().items() if v is not None}
    check_results = [
        dg.AssetCheckResult(
            check_name=CHECK_WITHIN_THRESHOLD,
            passed=not (row.success and is_breach(offsets, threshold)),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"offsets_deg": dg.MetadataValue.json(offsets), "threshold_deg": threshold},
        ),
        dg.AssetCheckResult(
            check_name=CHECK_CONCLUSIVE,
            passed=row.success,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"status": status.value, "failure_log": row.failure_log or ""},
        ),
        dg.AssetCheckResult(
            check_name=CHECK_REFERENCE_FRESH,
            passed=reference_age_days is not None and reference_age_days <= max_age,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "reference_age_days": round(reference_age_days, 2) if reference_age_days is not None else -1.0,
                "max_age_days": max_age,
            },
        ),
    ]
    metadata: dict[str, Any] = {
        "status": status.value,
        "success": row.success,
        "deployment": row.deployment_name,
        "yaw_offset_deg": row.yaw_offset if row.yaw_offset is not None else float("nan"),
        "pitch_offset_deg": row.pitch_offset if row.pitch_offset is not None else float("nan"),
        "roll_offset_deg": row.roll_offset if row.roll_offset is not None else float("nan"),
        "uncertainty_deg": dg.MetadataValue.json(row.uncertainties()),
        "inliers": row.inliers or 0,
        "algorithm_version": row.algorithm_version,
        "failure_log": row.failure_log or "",
        "files": row.files_location or "",
    }
    if estimate is not None:
        metadata["frames"] = dg.MetadataValue.json(estimate.get("frames", []))
    if diagnostic:
        metadata["diagnostic"] = _image_md(thumbnail_png(diagnostic, 1000), "matches and view outlines")
    try:
        trend = _trend(table, row)
        if trend:
            metadata["trend"] = _image_md(trend, "offset trend", "image/png")
    except Exception as exc:  # the plot is a convenience; the row is already written
        context.log.warning(f"trend plot failed: {exc}")
    context.log.info(f"{device_id} {time_key}: {status.value} {json.dumps(row.offsets())}")
    return dg.MaterializeResult(metadata=metadata, check_results=check_results)


ASSETS = [reference_scan, query_capture, calibration_offsets]
