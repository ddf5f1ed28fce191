"""Checks whose run died unexpectedly still end as their rows: the record_failed_checks sensor (and
`calmon monitor`, for the runs it executes) give each device of the run one, reported as the
partition's result."""

from __future__ import annotations

import dagster as dg

from calmon_assets.defs.checks.asset_checks import CHECKS_KEY
from calmon_assets.defs.checks.jobs import calibration_check_job
from calmon_assets.defs.partitions import DEPLOYMENT_DIM, DEVICE_DIM, TIME_DIM, check_partition_key
from calmon_assets.defs.runs import DEPLOYMENT_TAG
from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.check import failed_check
from calmon_core.config import CalmonConfig
from calmon_core.models import CheckStatus
from resources.results_table import ResultsTableResource

# On the materialization record_failed_run reports for a run that died: that run's id (the report
# itself belongs to no run), so its tags still decide whether the result is alerted.
FAILED_RUN_KEY = "failed_run_id"


def run_failure_reason(events, fallback: str = "run failed") -> str:
    """Why a run failed, from its events: the first failed step's exception in its own words
    ("query_capture: services \"cam\" not found"), not "Execution of step ... failed"; `fallback`
    when no step failed (the run died outside its steps)."""
    event = next((e for e in events if e.is_step_failure), None)
    if event is None:
        return fallback
    error = getattr(event.event_specific_data, "error", None)
    if error is None:
        return event.message or "step failed"
    while error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
        error = error.cause
    return f"{event.step_key}: {error.message.strip()}"


def run_check_devices(run: dg.DagsterRun, site_config: CalmonConfig) -> tuple[str, str, list[str]] | None:
    """(deployment, time key, devices) a check run was to check, from its partition and run config;
    None for a run that is not a check of a partition."""
    time_key = run.tags.get(f"dagster/partition/{TIME_DIM}")
    legacy_device = run.tags.get(f"dagster/partition/{DEVICE_DIM}")
    if time_key and legacy_device:  # a run of the device x time partitions checks had before
        try:
            deployment_name = site_config.fleet.find(legacy_device)[0].name
        except KeyError:
            deployment_name = run.tags.get(DEPLOYMENT_TAG, "unknown")
        return deployment_name, time_key, [legacy_device]
    deployment_name = run.tags.get(f"dagster/partition/{DEPLOYMENT_DIM}")
    if not deployment_name or not time_key:
        return None
    ops = (run.run_config or {}).get("ops", {})
    chosen: list[str] = []
    for step in ("query_capture", "calibration_offsets"):
        chosen = chosen or list(((ops.get(step) or {}).get("config") or {}).get("devices") or [])
    if chosen:
        return deployment_name, time_key, chosen
    deployment = site_config.fleet.deployment(deployment_name)
    return deployment_name, time_key, [d.id for d in deployment.devices if d.enabled] if deployment else []


def record_failed_run(
    instance: dg.DagsterInstance, run: dg.DagsterRun, reason: str, site_config: CalmonConfig, results_table
) -> bool:
    """Give each check of a run that died unexpectedly its row (success = false), and its ❌.

    The rows are reported as a materialization of calibration_offsets for the run's partition, so the
    ❌s go out through the same cursor as every other result (held back while Slack is down, never
    sent twice) and the partition in the UI shows the failed rows instead of nothing. Devices the run
    already wrote its own row for keep it. Returns False when there was nothing to record.
    """
    planned = run_check_devices(run, site_config)
    if planned is None:
        return False
    deployment_name, time_key, device_ids = planned
    existing = results_table.read_many([(device_id, time_key) for device_id in device_ids])
    missing = [d for d in device_ids if (row := existing.get((d, time_key))) is None or row.run_id != run.run_id]
    if not missing:
        return False
    rows = []
    for device_id in missing:
        try:
            mode = site_config.fleet.find(device_id)[1].mode
        except KeyError:
            mode = "passive"
        rows.append(
            failed_check(
                deployment_name=deployment_name,
                device_id=device_id,
                check_partition=time_key,
                reason=f"check run {run.run_id[:8]} failed: {reason}",
                mode=mode,
                threshold_deg=site_config.settings.check.threshold_deg,
                run_id=run.run_id,
            )
        )
    results_table.write(rows)
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="calibration_offsets",
            partition=str(check_partition_key(deployment_name, time_key)),
            description=f"recorded after run {run.run_id} failed",
            metadata={
                "status": CheckStatus.failed.value,
                "success": False,
                "deployment": deployment_name,
                "failure_log": rows[0].failure_log or "",
                CHECKS_KEY: dg.MetadataValue.json(
                    {
                        row.device_id: {"status": CheckStatus.failed.value, "failure_log": row.failure_log}
                        for row in rows
                    }
                ),
                FAILED_RUN_KEY: run.run_id,
            },
        )
    )
    return True


@dg.run_failure_sensor(
    name="record_failed_checks",
    monitored_jobs=[calibration_check_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="An unexpected error still ends as a results row (success = false), reported as the "
    "partition's calibration_offsets result, so slack_alerts posts its ❌.",
)
def record_failed_checks_sensor(
    context: dg.RunFailureSensorContext,
    site: SiteConfigResource,
    results_table: ResultsTableResource,
):
    logs = context.instance.all_logs(context.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    message = run_failure_reason(
        [entry.dagster_event for entry in logs if entry.dagster_event is not None],
        fallback=context.failure_event.message if context.failure_event else "run failed",
    )
    record_failed_run(context.instance, context.dagster_run, message, site.load(), results_table.get_client())
