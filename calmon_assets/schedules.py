"""Schedules: the checks (every tick, one run per enabled device for the current time partition) and
the results table's upkeep."""

import dagster as dg

from calmon_assets.jobs import DEPLOYMENT_TAG, DEVICE_TAG, calibration_check_job, results_table_maintenance_job
from calmon_assets.partitions import check_partition_key, check_time_partitions
from calmon_assets.site import SiteConfigResource
from calmon_core.config import ConfigError


def current_time_key(moment) -> str:
    """The time partition that contains `moment` (the check being run now)."""
    return check_time_partitions.get_partition_key_for_timestamp(moment.timestamp())


def check_run_requests(fleet, time_key: str) -> list[dg.RunRequest]:
    return [
        dg.RunRequest(
            run_key=f"{device.id}|{time_key}",
            partition_key=check_partition_key(device.id, time_key),
            tags={DEPLOYMENT_TAG: deployment.name, DEVICE_TAG: device.id},
        )
        for deployment, device in fleet.devices(enabled_only=True)
    ]


def build_check_schedule(cron: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="calibration_check_schedule",
        job=calibration_check_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Checks every enabled device once per time partition; runs are tagged with "
        "their deployment so the run queue can limit port-forwards per cluster.",
    )
    def calibration_check_schedule(context: dg.ScheduleEvaluationContext, site: SiteConfigResource):
        try:
            fleet = site.load().fleet
        except ConfigError as exc:
            return dg.SkipReason(f"configuration is broken, no checks requested:\n{exc}")
        time_key = current_time_key(context.scheduled_execution_time)
        requests = check_run_requests(fleet, time_key)
        return requests or dg.SkipReason("no enabled devices in devices.yaml")

    return calibration_check_schedule


def build_maintenance_schedule(cron: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="results_table_maintenance_schedule",
        job=results_table_maintenance_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Merges the one-file-per-check data files and expires old snapshots of the results table.",
    )
