"""Taking one check's query capture and storing it: the work behind the query_capture asset."""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg

from calmon_assets.defs.devices.connect import device_extractor
from calmon_assets.defs.metadata import PREVIEW_WIDTH_PX, picture_metadata, reading, workdir
from calmon_core.capture_format import read_capture
from calmon_core.capture_ports import CaptureFailed
from calmon_core.check import CaptureOutcome
from calmon_core.config import CalmonConfig, Deployment, Device
from calmon_core.extraction import ExtractedCapture
from calmon_core.layout import format_timestamp, query_scan_prefix
from calmon_core.plots import thumbnail_jpeg
from resources.camera import CameraError, CameraResource
from resources.kubectl import KubectlError, KubectlResource
from resources.mqtt import MqttResource
from resources.object_store import ObjectStore, ObjectStoreError


def capture_stops(config: CalmonConfig, device: Device) -> list[tuple[float, float, float]]:
    """The PTZ stops of an active device (its own, else the site's); none for a passive one."""
    if device.mode != "active":
        return []
    return list(device.active_ptz_stops or config.settings.capture.active_ptz_stops)


def take_capture(
    config: CalmonConfig,
    deployment: Deployment,
    device: Device,
    connections: tuple[KubectlResource, MqttResource, CameraResource],
    work: Path,
    stops: list[tuple[float, float, float]],
) -> ExtractedCapture | str:
    """The capture, or in plain words why there is none ("capture failed: ...")."""
    capture_settings = config.settings.capture
    stabilize = device.stabilize_time if device.stabilize_time is not None else capture_settings.stabilize_time
    try:
        with device_extractor(config, deployment, device, *connections, work) as extractor:
            return extractor.extract_query(
                device.id,
                stabilize_time=int(stabilize) if float(stabilize).is_integer() else stabilize,  # type: ignore[arg-type]
                timeout=int(capture_settings.timeout) if capture_settings.timeout else None,
                active_ptz_stops=stops,
            )
    except (CaptureFailed, CameraError, KubectlError) as exc:
        # capture and camera errors name the device already; kubectl's name only the cluster side
        where = f"device {device.id}: " if isinstance(exc, KubectlError) else ""
        return f"capture failed: {where}{exc}"


def reresolved_connections(capture: ExtractedCapture) -> dict[str, Any]:
    """The connections lost mid-check and restored at a re-resolved address (a restarted port-forward)."""
    summary = capture.telemetry_summary
    return {k: summary[k] for k in ("camera_reresolved", "telemetry_reresolved") if summary.get(k)}


def keep_capture(capture: ExtractedCapture, folder: Path, outcome: CaptureOutcome) -> CaptureOutcome:
    """Move the capture into its check's folder; the outcome then says where it is and what it holds."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.move(str(capture.folder), folder)
    manifest = read_capture(folder)
    return outcome.model_copy(
        update={
            "local_folder": str(folder.resolve()),
            "captured_at": manifest.frames[0].captured_at if manifest.frames else None,
            "capture_positions": [f.telemetry.model_dump() for f in manifest.frames],
            "waited_seconds": round(capture.waited_seconds, 1),
            "failed_stops": capture.failed_stops,
        }
    )


def store_capture(store: ObjectStore, folder: Path, prefix: str, outcome: CaptureOutcome) -> CaptureOutcome:
    """Upload the capture; a store that cannot take it leaves a note instead of a location."""
    try:
        store.upload_folder(folder, prefix)
        return outcome.model_copy(update={"files_location": store.uri(prefix)})
    except ObjectStoreError as exc:
        return outcome.model_copy(update={"storage_error": f"files could not be stored: {exc}"})


def capture_metadata(
    capture: ExtractedCapture, outcome: CaptureOutcome, folder: Path, pictures: str = "preview"
) -> dict[str, Any]:
    manifest = read_capture(folder)
    metadata: dict[str, Any] = {
        "ok": True,
        "mode": outcome.mode,
        "frames": reading(len(manifest.frames), "", 0),
        "waited": reading(outcome.waited_seconds, " s", 1),
        "telemetry": dg.MetadataValue.json(capture.telemetry_summary),
        "files": outcome.files_location or outcome.storage_error,
    }
    if manifest.frames:
        first = manifest.frames[0].image
        preview = thumbnail_jpeg((folder / first).read_bytes(), PREVIEW_WIDTH_PX) if pictures == "preview" else None
        uri = f"{outcome.files_location.rstrip('/')}/{first}" if outcome.files_location else None
        metadata.update(picture_metadata("frame", preview, uri, "query frame", pictures))
    return metadata


def capture_device(
    config: CalmonConfig,
    deployment: Deployment,
    device: Device,
    connections: tuple[KubectlResource, MqttResource, CameraResource],
    store: ObjectStore,
    time_key: str,
    window_start: datetime,
    log,
) -> tuple[CaptureOutcome, dict[str, Any]]:
    """One device's capture for the check at `time_key`, taken and stored: its outcome (a failure
    in words when there is none) and its metadata."""
    stamp = format_timestamp(window_start)
    stops = capture_stops(config, device)
    outcome = CaptureOutcome(
        deployment_name=deployment.name,
        device_id=device.id,
        time_key=time_key,
        query_key=stamp,
        mode="active" if stops else "passive",
    )
    work = workdir(config.settings.capture.workdir, deployment.name, device.id, "query_scan")
    started = time.monotonic()
    capture = take_capture(config, deployment, device, connections, work, stops)
    if isinstance(capture, str):
        outcome = outcome.model_copy(
            update={"failure_log": capture, "waited_seconds": round(time.monotonic() - started, 1)}
        )
        log.warning(f"{device.id} {time_key}: {capture}")
        return outcome, {"ok": False, "failure_log": capture, "waited": reading(outcome.waited_seconds, " s", 1)}
    if moved := reresolved_connections(capture):
        log.warning(
            f"{device.id} {time_key}: connection lost mid-check and restored at a "
            f"re-resolved address (port-forward restarted): {moved}"
        )
    folder = work / stamp
    outcome = keep_capture(capture, folder, outcome)
    outcome = store_capture(store, folder, query_scan_prefix(deployment.name, device.id, stamp), outcome)
    if outcome.storage_error:
        log.warning(f"{device.id} {time_key}: {outcome.storage_error}")
    return outcome, capture_metadata(capture, outcome, folder, config.settings.ui.pictures)
