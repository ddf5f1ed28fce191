"""reference_scan (per device): frames over the device's pose grid, their telemetry and features."""

import time
from pathlib import Path

import dagster as dg

from calmon_assets.defs import cpu_slots
from calmon_assets.defs.devices.connect import device_extractor
from calmon_assets.defs.metadata import image_md, workdir
from calmon_assets.defs.partitions import device_partitions
from calmon_assets.defs.references.collect import store_reference
from calmon_assets.defs.runs import REBASE_TAG, REGIME_TAG
from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.capture_format import read_capture
from calmon_core.features import build_reference_features
from calmon_core.layout import reference_scan_prefix
from calmon_core.lens import LensCalibration, calibration_markdown
from calmon_core.plots import contact_sheet, thumbnail_jpeg
from resources.camera import CameraResource
from resources.kubectl import KubectlResource
from resources.mqtt import MqttResource
from resources.object_store import ObjectStoreResource

GROUP = "calibration"


def _coverage(folder: Path) -> tuple[int, str]:
    frames = read_capture(folder).frames
    yaws = [f.telemetry.yaw for f in frames]
    pitches = [f.telemetry.pitch for f in frames]
    return len(frames), f"yaw {min(yaws):+.1f}..{max(yaws):+.1f}°, pitch {min(pitches):+.1f}..{max(pitches):+.1f}°"


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
    work = workdir(capture_settings.workdir, deployment.name, device_id, "reference_runs")
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        context.log.info(f"{device_id}: reference frame {done}/{total}")

    with device_extractor(config, deployment, device, kubectl, mqtt, camera, work) as extractor:
        scan = extractor.capture_reference(
            device_id,
            stabilize_time=capture_settings.reference_stabilize_time,
            timeout=capture_settings.timeout,
            progress=progress,
        )
    with cpu_slots.CPU_SLOTS:
        summary = build_reference_features(scan.folder)
    store = object_store.get_client()
    prefix = reference_scan_prefix(deployment.name, device_id)
    tags = context.run.tags
    registration = store_reference(
        store,
        deployment.name,
        device_id,
        Path(scan.folder),
        workdir(capture_settings.workdir, "cache"),
        rebase=tags.get(REBASE_TAG) == "true",
        regime=tags.get(REGIME_TAG) or None,
    )
    frames, coverage = _coverage(scan.folder)
    sheet = contact_sheet(scan.folder)
    return dg.MaterializeResult(
        metadata={
            "frames": frames,
            "grid_poses": len(device.reference_grid.poses()),
            "coverage": coverage,
            "keypoints": int(summary.get("keypoints", 0)),
            "features": dg.MetadataValue.json(summary),
            "lens": dg.MetadataValue.md(calibration_markdown(LensCalibration.from_json_dict(summary.get("lens")))),
            "files": dg.MetadataValue.url(store.uri(prefix)),
            "registration": dg.MetadataValue.json(registration),
            "gauge_id": registration["gauge_id"],
            "seconds": round(time.monotonic() - started, 1),
            "contact_sheet": image_md(thumbnail_jpeg(sheet, 1200), "reference contact sheet"),
        }
    )
