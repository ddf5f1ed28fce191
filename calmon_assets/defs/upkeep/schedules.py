"""The results table's upkeep schedule, away from the checks."""

import dagster as dg

from calmon_assets.defs.upkeep.jobs import results_table_maintenance_job


def build_maintenance_schedule(cron: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="results_table_maintenance_schedule",
        job=results_table_maintenance_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Merges the one-file-per-check data files and expires old snapshots of the results table.",
    )
