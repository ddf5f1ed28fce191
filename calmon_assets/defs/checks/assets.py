"""The check's assets (deployment x time): query_capture takes and stores each device's capture;
calibration_offsets estimates each device's offsets and writes the deployment's rows. One run
checks one deployment's devices, at most [schedule] max_concurrent_per_deployment at once (one
cluster's port-forwards). Thin by design: the rules live in calmon_core.check."""

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field

from calmon_assets.defs.checks.asset_checks import (
    CHECK_SPECS,
    capture_summary_metadata,
    deployment_check_results,
    deployment_metadata,
    result_metadata,
)
from calmon_assets.defs.checks.capture import capture_device
from calmon_assets.defs.checks.corrections import publish_correction
from calmon_assets.defs.checks.dead_runs import claim_run
from calmon_assets.defs.checks.measure import Measurement, diagnostics_key, measure_offsets
from calmon_assets.defs.metadata import workdir
from calmon_assets.defs.partitions import DEPLOYMENT_DIM, TIME_DIM, check_partitions, check_window_start
from calmon_assets.defs.runs import BACKFILL_TAG, CHECK_STATUS_TAG
from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.alert_policy import forecast_columns
from calmon_core.check import CaptureOutcome, CheckPolicy, DeploymentCaptures, evaluate_check, worst_status
from calmon_core.config import CalmonConfig, ConfigError, Deployment, Device
from calmon_core.corrections import CONCLUSIVE
from calmon_core.estimation import ALGORITHM_VERSION
from calmon_core.layout import format_timestamp, query_scan_prefix
from calmon_core.models import CalibrationResult
from resources.camera import CameraResource
from resources.kubectl import KubectlResource
from resources.mqtt import MqttResource
from resources.object_store import ObjectStoreResource
from resources.results_table import ResultsTableResource

GROUP = "calibration"
# Earlier rows of the device the row's trend and forecast are fitted on (the forecast window is 72 checks).
FORECAST_HISTORY_ROWS = 200

Item = TypeVar("Item")
Out = TypeVar("Out")


class CheckConfig(dg.Config):
    devices: list[str] = Field(
        default=[],
        description="Only these devices of the deployment (a re-check or re-estimate of one camera); "
        "empty: every enabled device of the deployment in devices.yaml.",
    )


def _partition(context: dg.AssetExecutionContext) -> tuple[str, str, datetime]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    return keys[DEPLOYMENT_DIM], keys[TIME_DIM], check_window_start(keys[TIME_DIM])


def run_devices(config: CalmonConfig, deployment_name: str, chosen: list[str]) -> tuple[Deployment, list[Device]]:
    """The deployment of a check run and the devices it covers: the chosen ones, else its enabled ones."""
    deployment = config.fleet.deployment(deployment_name)
    if deployment is None:
        raise ConfigError([f"deployment {deployment_name!r} is not in devices.yaml"])
    if not chosen:
        return deployment, [d for d in deployment.devices if d.enabled]
    known = {d.id: d for d in deployment.devices}
    unknown = [d for d in chosen if d not in known]
    if unknown:
        raise ConfigError([f"not devices of deployment {deployment_name!r} in devices.yaml: {', '.join(unknown)}"])
    return deployment, [known[d] for d in chosen]


def each(work: Callable[[Item], Out], items: list[Item], workers: int) -> list[Out]:
    """work(item) for every item, `workers` at once, results in the items' order."""
    if len(items) <= 1 or workers <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="calmon-check") as pool:
        return list(pool.map(work, items))


def _unexpected(device_id: str, stage: str, exc: Exception) -> str:
    # one device's bug or outage must not cost the deployment's other checks their rows
    return f"{stage} failed: device {device_id}: unexpected {type(exc).__name__}: {exc}"


@dg.asset(
    partitions_def=check_partitions,
    group_name=GROUP,
    kinds={"python", "s3"},
    description="The query captures of one deployment's check: for each device, frames taken once "
    "its telemetry was still (passive) or at each PTZ stop (active), stored under "
    "{deployment}/{device}/query_scan/{timestamp}/. The value is each device's capture outcome, "
    "which calibration_offsets turns into its results row.",
)
def query_capture(
    context: dg.AssetExecutionContext,
    config: CheckConfig,
    site: SiteConfigResource,
    kubectl: KubectlResource,
    mqtt: MqttResource,
    camera: CameraResource,
    object_store: ObjectStoreResource,
) -> dg.Output[DeploymentCaptures]:
    deployment_name, time_key, window_start = _partition(context)
    site_config = site.load()
    claim_run(context, site_config.settings.execution.executor)
    deployment, devices = run_devices(site_config, deployment_name, config.devices)
    store = object_store.get_client()

    def capture_one(device: Device) -> tuple[CaptureOutcome, dict[str, Any]]:
        try:
            return capture_device(
                site_config, deployment, device, (kubectl, mqtt, camera), store, time_key, window_start, context.log
            )
        except Exception as exc:
            reason = _unexpected(device.id, "capture", exc)
            context.log.error(f"{device.id} {time_key}: {reason}")
            outcome = CaptureOutcome(
                deployment_name=deployment_name,
                device_id=device.id,
                time_key=time_key,
                query_key=format_timestamp(window_start),
                mode=device.mode,
                failure_log=reason,
            )
            return outcome, {"ok": False, "failure_log": reason}

    captured = each(capture_one, devices, site_config.settings.schedule.max_concurrent_per_deployment)
    # a run of some devices keeps the partition's other captures, for a later re-estimate of them
    earlier = _earlier_captures(context) if config.devices else {}
    captures = DeploymentCaptures(
        deployment_name=deployment_name,
        time_key=time_key,
        outcomes={**earlier, **{outcome.device_id: outcome for outcome, _ in captured}},
    )
    return dg.Output(captures, metadata=capture_summary_metadata(captured))


def _stored_value(context: dg.AssetExecutionContext, io_manager) -> DeploymentCaptures | None:
    """The partition's stored query_capture value, if one was stored and can be read."""
    partition = str(context.partition_key)
    stored = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("query_capture"), asset_partitions=[partition]), limit=1
    )
    if not stored.records:
        return None
    try:
        load = dg.build_input_context(
            asset_key=dg.AssetKey("query_capture"),
            partition_key=partition,
            asset_partitions_def=check_partitions,
            instance=context.instance,
        )
        # the built context logs to a console logger of its own at DEBUG (into the CLI's output);
        # the run's log manager keeps the run config's levels and the run's event log
        load._log = context.log  # noqa: SLF001
        value = io_manager.load_input(load)
        return DeploymentCaptures.model_validate(value) if isinstance(value, dict) else value
    except Exception as exc:  # a value of the device partitions checks had before, or unreadable
        context.log.info(f"no query_capture value of {partition} to read ({type(exc).__name__})")
        return None


def _earlier_captures(context: dg.AssetExecutionContext) -> dict[str, CaptureOutcome]:
    """The partition's captures stored before this run (none: none yet)."""
    captures = _stored_value(context, context.resources.io_manager)
    return dict(captures.outcomes) if isinstance(captures, DeploymentCaptures) else {}


def _stored_captures(
    context: dg.AssetExecutionContext,
    io_manager,
    store,
    config: CalmonConfig,
    deployment_name: str,
    time_key: str,
    chosen: list[str],
) -> DeploymentCaptures:
    """The partition's captures: query_capture's value, else (an hour checked before deployment
    partitions existed, whose values are per device) the captures found in the object store."""
    captures = _stored_value(context, io_manager)
    if isinstance(captures, DeploymentCaptures):
        return captures
    context.log.info(f"{context.partition_key}: re-estimating the captures found under query_scan/")
    stamp = format_timestamp(check_window_start(time_key))
    _, devices = run_devices(config, deployment_name, chosen)
    found = {}
    for device in devices:
        prefix = query_scan_prefix(deployment_name, device.id, stamp)
        if store.exists(f"{prefix}/manifest.json"):
            found[device.id] = CaptureOutcome(
                deployment_name=deployment_name,
                device_id=device.id,
                time_key=time_key,
                query_key=stamp,
                mode=device.mode,
                files_location=store.uri(prefix),
            )
    return DeploymentCaptures(deployment_name=deployment_name, time_key=time_key, outcomes=found)


def _outcomes(captures: DeploymentCaptures, chosen: list[str]) -> list[CaptureOutcome]:
    outcomes = sorted(captures.outcomes.values(), key=lambda o: o.device_id)
    if chosen:
        missing = sorted(set(chosen) - {o.device_id for o in outcomes})
        if missing:
            raise ConfigError([f"no query capture of {', '.join(missing)} in this partition to re-estimate"])
        outcomes = [o for o in outcomes if o.device_id in chosen]
    return outcomes


@dg.asset(
    partitions_def=check_partitions,
    group_name=GROUP,
    kinds={"python", "iceberg"},
    # query_capture's value is read by the body: an hour checked before deployment partitions
    # existed has none, and is re-estimated from the captures in the object store
    deps=[query_capture, dg.AssetDep("reference_scan", partition_mapping=dg.AllPartitionMapping())],
    check_specs=CHECK_SPECS,
    description="The check's results: each device's pitch/yaw/roll offsets (true − reported) "
    "estimated from its query capture against its reference scan, written as one row per device "
    "of the results table (idempotent per device and check time).",
)
def calibration_offsets(
    context: dg.AssetExecutionContext,
    config: CheckConfig,
    site: SiteConfigResource,
    object_store: ObjectStoreResource,
    results_table: ResultsTableResource,
    kubectl: KubectlResource,
    mqtt: MqttResource,
    io_manager: dg.ResourceParam[Any],
) -> dg.MaterializeResult:
    deployment_name, time_key, window_start = _partition(context)
    site_config = site.load()
    settings = site_config.settings
    claim_run(context, settings.execution.executor)
    policy = CheckPolicy(threshold_deg=settings.check.threshold_deg)
    store = object_store.get_client()
    captures = _stored_captures(context, io_manager, store, site_config, deployment_name, time_key, config.devices)
    outcomes = _outcomes(captures, config.devices)
    cache_root = workdir(settings.capture.workdir, "cache")
    backfill = BACKFILL_TAG in context.run.tags
    # the bank grows from the light of now: a backfill re-estimating months of old captures would
    # fill it with frames of other seasons
    grow = settings.check.grow_bank and not backfill

    def measure_one(outcome: CaptureOutcome):
        try:
            measurement = measure_offsets(store, outcome, cache_root, policy.threshold_deg, context.log, grow_bank=grow)
        except Exception as exc:
            measurement = Measurement(failure=_unexpected(outcome.device_id, "estimate", exc))
            context.log.error(f"{outcome.device_id} {time_key}: {measurement.failure}")
        row = evaluate_check(
            outcome,
            measurement.estimate,
            policy,
            check_time=window_start,
            algorithm_version=ALGORITHM_VERSION,
            failure=measurement.failure,
            notes=measurement.notes,
            run_id=context.run.run_id,
            gauge_id=measurement.gauge_id,
        )
        return outcome, measurement, row

    # the estimates take CPU slots (cpu_slots); the threads beyond them fetch references meanwhile
    measured = each(measure_one, outcomes, 2 * (os.cpu_count() or 1))
    table = results_table.get_client()
    histories = table.histories([row.device_id for _, _, row in measured], FORECAST_HISTORY_ROWS)
    rows: list[CalibrationResult] = []
    for _, _, row in measured:
        rows.append(row.model_copy(update=forecast_columns(row, histories.get(row.device_id, []), settings.alerts)))
    table.write(rows)
    worst = worst_status([row.status for row in rows])
    if worst is not None:
        context.instance.add_run_tags(context.run.run_id, {CHECK_STATUS_TAG: worst.value})

    per_device = {}
    for (outcome, measurement, _), row in zip(measured, rows, strict=True):
        history = histories.get(row.device_id, [])

        def store_picture(data: bytes, name: str, outcome: CaptureOutcome = outcome) -> str | None:
            if not outcome.files_location:
                return None
            try:
                store.put_bytes(diagnostics_key(outcome, name), data)
                return store.uri(diagnostics_key(outcome, name))
            except Exception as exc:  # a missing picture must not lose the row
                context.log.warning(f"{outcome.device_id}: {name} not stored: {exc}")
                return None

        metadata = result_metadata(row, measurement, history, context.log, settings.ui.pictures, store_picture)
        # a backfill re-estimates old checks: the current correction is the next scheduled check's to post
        if settings.corrections.mqtt_topic and row.status in CONCLUSIVE and not backfill:
            metadata["correction"] = publish_correction(
                site_config, row, history, measurement.gauge_id, kubectl, mqtt, context.log
            )
        per_device[row.device_id] = (row, measurement, metadata)
    return dg.MaterializeResult(
        metadata=deployment_metadata(per_device, settings.ui.pictures),
        check_results=deployment_check_results(per_device, settings.schedule.reference_max_age_days),
    )
