"""The fleet view: the fleet_health asset (every device at a glance) and the sensor that refreshes
it after each check cycle."""

import dagster as dg

from calmon_assets.defs.fleet.assets import fleet_health, fleet_health_job
from calmon_assets.defs.fleet.sensors import refresh_fleet_health_sensor
from calmon_core.config import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[fleet_health], jobs=[fleet_health_job], sensors=[refresh_fleet_health_sensor])
