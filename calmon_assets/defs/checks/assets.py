"""The check's assets (device x time): query_capture takes and stores the capture; calibration_offsets
estimates the offsets and writes the check's row. Thin by design: the rules live in calmon_core.check."""

import time
from datetime import datetime

import dagster as dg

from calmon_assets.defs.checks.asset_checks import CHECK_SPECS, check_results, result_metadata
from calmon_assets.defs.checks.capture import (
    capture_metadata,
    capture_stops,
    keep_capture,
    reresolved_connections,
    store_capture,
    take_capture,
)
from calmon_assets.defs.checks.corrections import publish_correction
from calmon_assets.defs.checks.measure import measure_offsets
from calmon_assets.defs.metadata import reading, workdir
from calmon_assets.defs.partitions import DEVICE_DIM, TIME_DIM, check_partitions, check_window_start
from calmon_assets.defs.runs import BACKFILL_TAG, CHECK_STATUS_TAG
from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.alert_policy import forecast_columns
from calmon_core.check import CaptureOutcome, CheckPolicy, evaluate_check
from calmon_core.corrections import CONCLUSIVE
from calmon_core.estimation import ALGORITHM_VERSION
from calmon_core.layout import format_timestamp, query_scan_prefix
from calmon_core.models import CheckStatus
from resources.camera import CameraResource
from resources.kubectl import KubectlResource
from resources.mqtt import MqttResource
from resources.object_store import ObjectStoreResource
from resources.results_table import ResultsTableResource

GROUP = "calibration"
# Earlier rows of the device the row's trend and forecast are fitted on (the forecast window is 72 checks).
FORECAST_HISTORY_ROWS = 200


def _partition(context: dg.AssetExecutionContext) -> tuple[str, str, datetime]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    return keys[DEVICE_DIM], keys[TIME_DIM], check_window_start(keys[TIME_DIM])


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
) -> dg.Output[CaptureOutcome]:
    device_id, time_key, window_start = _partition(context)
    config = site.load()
    deployment, device = config.fleet.find(device_id)
    stamp = format_timestamp(window_start)
    stops = capture_stops(config, device)
    outcome = CaptureOutcome(
        deployment_name=deployment.name,
        device_id=device_id,
        time_key=time_key,
        query_key=stamp,
        mode="active" if stops else "passive",
    )
    work = workdir(config.settings.capture.workdir, deployment.name, device_id, "query_scan")
    started = time.monotonic()
    capture = take_capture(config, deployment, device, (kubectl, mqtt, camera), work, stops)
    if isinstance(capture, str):
        outcome = outcome.model_copy(
            update={"failure_log": capture, "waited_seconds": round(time.monotonic() - started, 1)}
        )
        context.log.warning(f"{device_id} {time_key}: {capture}")
        metadata = {"ok": False, "failure_log": capture, "waited": reading(outcome.waited_seconds, " s", 1)}
        return dg.Output(outcome, metadata=metadata)
    if moved := reresolved_connections(capture):
        context.log.warning(
            f"{device_id} {time_key}: connection lost mid-check and restored at a "
            f"re-resolved address (port-forward restarted): {moved}"
        )
    folder = work / stamp
    outcome = keep_capture(capture, folder, outcome)
    outcome = store_capture(
        object_store.get_client(), folder, query_scan_prefix(deployment.name, device_id, stamp), outcome
    )
    if outcome.storage_error:
        context.log.warning(f"{device_id} {time_key}: {outcome.storage_error}")
    return dg.Output(outcome, metadata=capture_metadata(capture, outcome, folder))


@dg.asset(
    partitions_def=check_partitions,
    group_name=GROUP,
    kinds={"python", "iceberg"},
    # Any: query captures stored before CaptureOutcome existed are dicts of the same fields
    ins={"query_capture": dg.AssetIn(dagster_type=dg.Any)},
    deps=[
        dg.AssetDep(
            "reference_scan",
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=DEVICE_DIM),
        )
    ],
    check_specs=CHECK_SPECS,
    description="The check's result: pitch/yaw/roll offsets (true − reported) estimated from the "
    "query capture against the reference scan, written as one row of the results table "
    "(idempotent per device and check time).",
)
def calibration_offsets(
    context: dg.AssetExecutionContext,
    query_capture: CaptureOutcome,
    site: SiteConfigResource,
    object_store: ObjectStoreResource,
    results_table: ResultsTableResource,
    kubectl: KubectlResource,
    mqtt: MqttResource,
) -> dg.MaterializeResult:
    _, _, window_start = _partition(context)
    config = site.load()
    settings = config.settings
    policy = CheckPolicy(threshold_deg=settings.check.threshold_deg)
    outcome = CaptureOutcome.model_validate(query_capture) if isinstance(query_capture, dict) else query_capture
    cache_root = workdir(settings.capture.workdir, "cache")
    measurement = measure_offsets(object_store.get_client(), outcome, cache_root, policy.threshold_deg, context.log)
    row = evaluate_check(
        outcome,
        measurement.estimate,
        policy,
        check_time=window_start,
        algorithm_version=ALGORITHM_VERSION,
        failure=measurement.failure,
        notes=measurement.notes,
        run_id=context.run.run_id,
    )
    table = results_table.get_client()
    history = table.history(row.device_id, limit=FORECAST_HISTORY_ROWS)
    row = row.model_copy(update=forecast_columns(row, history, settings.alerts))
    table.write([row])
    context.instance.add_run_tags(context.run.run_id, {CHECK_STATUS_TAG: CheckStatus(row.status).value})
    metadata = result_metadata(row, measurement, history, context.log)
    # a backfill re-estimates old checks: the current correction is the next scheduled check's to post
    if settings.corrections.mqtt_topic and row.status in CONCLUSIVE and BACKFILL_TAG not in context.run.tags:
        metadata["correction"] = publish_correction(
            config, row, history, measurement.gauge_id, kubectl, mqtt, context.log
        )
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=check_results(row, measurement.reference_age_days, settings.schedule.reference_max_age_days),
    )
