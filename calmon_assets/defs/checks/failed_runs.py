"""A check whose run died unexpectedly still ends as its row: the record_failed_checks sensor (and
`calmon monitor`, for the runs it executes) give it one, reported as the partition's result."""

from __future__ import annotations

import dagster as dg

from calmon_assets.defs.checks.jobs import calibration_check_job
from calmon_assets.defs.partitions import DEVICE_DIM, TIME_DIM, check_partition_key
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


def record_failed_run(
    instance: dg.DagsterInstance, run: dg.DagsterRun, reason: str, site_config: CalmonConfig, results_table
) -> bool:
    """Give a check whose run died unexpectedly its row (success = false), and its ❌.

    The row is reported as a materialization of calibration_offsets for the run's partition, so the
    ❌ goes out through the same cursor as every other result (held back while Slack is down, never
    sent twice) and the partition in the UI shows the failed row instead of nothing. Returns False
    when the run already wrote its own row (nothing to record).
    """
    device_id = run.tags.get(f"dagster/partition/{DEVICE_DIM}")
    time_key = run.tags.get(f"dagster/partition/{TIME_DIM}")
    if not device_id or not time_key:
        return False
    existing = results_table.read(device_id, time_key)
    if existing is not None and existing.run_id == run.run_id:
        return False
    try:
        deployment, device = site_config.fleet.find(device_id)
        deployment_name, mode = deployment.name, device.mode
    except KeyError:
        deployment_name, mode = run.tags.get(DEPLOYMENT_TAG, "unknown"), "passive"
    row = failed_check(
        deployment_name=deployment_name,
        device_id=device_id,
        check_partition=time_key,
        reason=f"check run {run.run_id[:8]} failed: {reason}",
        mode=mode,
        threshold_deg=site_config.settings.check.threshold_deg,
        run_id=run.run_id,
    )
    results_table.write([row])
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="calibration_offsets",
            partition=str(check_partition_key(device_id, time_key)),
            description=f"recorded after run {run.run_id} failed",
            metadata={
                "status": CheckStatus.failed.value,
                "success": False,
                "deployment": deployment_name,
                "failure_log": row.failure_log or "",
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
