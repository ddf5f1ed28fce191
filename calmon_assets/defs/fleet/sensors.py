"""Refreshing fleet_health after each check cycle: once new results exist and no check is still running."""

from __future__ import annotations

import dagster as dg

from calmon_assets.defs.fleet.assets import fleet_health_job

OFFSETS = dg.AssetKey("calibration_offsets")
CHECK_JOBS = ("calibration_check", "reprocess_offsets")
_UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def latest_result_id(instance: dg.DagsterInstance) -> int:
    """The storage id of the newest calibration_offsets result (0: none yet)."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=OFFSETS), limit=1).records
    return records[0].storage_id if records else 0


def checks_running(instance: dg.DagsterInstance) -> bool:
    return any(instance.get_runs_count(dg.RunsFilter(job_name=job, statuses=_UNFINISHED)) > 0 for job in CHECK_JOBS)


@dg.sensor(
    name="refresh_fleet_health",
    job=fleet_health_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Materializes fleet_health once a check cycle has finished: new calibration_offsets "
    "results since the last refresh, and no check run still queued or running.",
)
def refresh_fleet_health_sensor(context: dg.SensorEvaluationContext):
    newest = latest_result_id(context.instance)
    if newest <= int(context.cursor or 0):
        return dg.SkipReason("no new results since the last refresh")
    if checks_running(context.instance):
        return dg.SkipReason("a check cycle is still running")
    context.update_cursor(str(newest))
    return dg.RunRequest(run_key=f"fleet-health-{newest}")
