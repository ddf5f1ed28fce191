"""Upkeep: the results table's maintenance job and its schedule."""

import dagster as dg

from calmon_assets.defs.upkeep.jobs import results_table_maintenance_job
from calmon_assets.defs.upkeep.schedules import build_maintenance_schedule
from calmon_core.config import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        jobs=[results_table_maintenance_job],
        schedules=[build_maintenance_schedule(settings.schedule.maintenance_cron)],
    )
