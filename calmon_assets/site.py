"""The site's configuration as a Dagster resource: the folder with calibration_monitoring.ini and
devices.yaml, read fresh on every use so an edited devices.yaml takes effect at the next tick."""

from __future__ import annotations

import os

import dagster as dg

from calmon_core.config import DEFAULT_CONFIG_DIR, CalmonConfig, load_config

CONFIG_DIR_ENV = "CALMON_CONFIG_DIR"


def config_dir_from_env() -> str:
    return os.environ.get(CONFIG_DIR_ENV, str(DEFAULT_CONFIG_DIR))


class SiteConfigResource(dg.ConfigurableResource):
    """Where the site's configuration lives (default: $CALMON_CONFIG_DIR or ./configs)."""

    config_dir: str = str(DEFAULT_CONFIG_DIR)

    def load(self) -> CalmonConfig:
        return load_config(self.config_dir)
