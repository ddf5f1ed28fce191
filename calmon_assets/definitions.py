"""The Dagster code location of calmon: every capability's definitions, merged, with the resources.

The site's config folder ($CALMON_CONFIG_DIR, default ./configs) holds calibration_monitoring.ini
for the settings (read once, here) and devices.yaml for the fleet (read at every use).
"""

from __future__ import annotations

import dagster as dg

from calmon_assets.defs import alerts, checks, devices, fleet, references, upkeep
from calmon_assets.defs.partitions import PARTITION_SCHEDULE, same_partitions
from calmon_assets.defs.resources import build_resources
from calmon_assets.defs.runs import build_executor
from calmon_assets.defs.site_config import CONFIG_DIR_ENV, config_dir_from_env, load_site_settings
from calmon_core.config import ConfigError, Settings

CAPABILITIES = (checks, references, alerts, fleet, upkeep, devices)


def build_definitions(config_dir: str | None = None, settings: Settings | None = None) -> dg.Definitions:
    """The definitions for a config folder; `settings` when the caller loaded them already."""
    config_dir = config_dir or config_dir_from_env()
    settings = settings or load_site_settings(config_dir)
    if not same_partitions(settings):
        raise ConfigError(
            [
                f"{config_dir}: [schedule] cadence {settings.schedule.cadence} from "
                f"{settings.schedule.start_date or 'the first day recorded in its object store'} "
                f"differs from the partitions this process loaded ({PARTITION_SCHEDULE.cadence} from "
                f"{PARTITION_SCHEDULE.start_date}, from ${CONFIG_DIR_ENV}); set {CONFIG_DIR_ENV}={config_dir}"
            ]
        )
    return dg.Definitions.merge(
        *(capability.build_defs(settings) for capability in CAPABILITIES),
        dg.Definitions(resources=build_resources(config_dir, settings), executor=build_executor(settings)),
    )


defs = build_definitions()
