"""Checks: query_capture and calibration_offsets (device x time) with their asset checks, the check
job and its schedule, the backfill job, and the sensor that gives a dead run its row."""

import dagster as dg

from calmon_assets.defs.checks.assets import calibration_offsets, query_capture
from calmon_assets.defs.checks.failed_runs import record_failed_checks_sensor
from calmon_assets.defs.checks.jobs import calibration_check_job, reprocess_offsets_job
from calmon_assets.defs.checks.schedules import build_check_schedule
from calmon_core.config import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[query_capture, calibration_offsets],
        jobs=[calibration_check_job, reprocess_offsets_job],
        schedules=[build_check_schedule(settings.schedule)],
        sensors=[record_failed_checks_sensor],
    )
