"""The check schedule: every tick, one run per deployment with enabled devices, for the current time
partition."""

import dagster as dg

from calmon_assets.defs.checks.jobs import calibration_check_job
from calmon_assets.defs.partitions import check_partition_key, current_time_key
from calmon_assets.defs.runs import DEPLOYMENT_TAG
from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.config import ConfigError, Fleet, ScheduleSettings

CRON_BY_CADENCE = {"hourly": "5 * * * *", "daily": "5 0 * * *"}


def check_run_requests(fleet: Fleet, time_key: str) -> list[dg.RunRequest]:
    return [
        dg.RunRequest(
            run_key=f"{deployment.name}|{time_key}",
            partition_key=check_partition_key(deployment.name, time_key),
            tags={DEPLOYMENT_TAG: deployment.name},
        )
        for deployment in fleet.deployments
        if any(device.enabled for device in deployment.devices)
    ]


def build_check_schedule(schedule: ScheduleSettings) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="calibration_check_schedule",
        job=calibration_check_job,
        cron_schedule=schedule.cron or CRON_BY_CADENCE[schedule.cadence],
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Checks every enabled device once per time partition: one run per deployment, "
        "its devices at most [schedule] max_concurrent_per_deployment at once (one cluster's "
        "port-forwards).",
    )
    def calibration_check_schedule(context: dg.ScheduleEvaluationContext, site: SiteConfigResource):
        try:
            fleet = site.load().fleet
        except ConfigError as exc:
            return dg.SkipReason(f"configuration is broken, no checks requested:\n{exc}")
        requests = check_run_requests(fleet, current_time_key(context.scheduled_execution_time))
        return requests or dg.SkipReason("no enabled devices in devices.yaml")

    return calibration_check_schedule
