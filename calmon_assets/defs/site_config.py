"""The site's configuration: the folder with calibration_monitoring.ini and devices.yaml.

The settings are read once, when the definitions load (load_site_settings); the fleet is read fresh
on every use through SiteConfigResource, so an edited devices.yaml takes effect at the next tick.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from calmon_core.config import (
    DEFAULT_CONFIG_DIR,
    SETTINGS_FILE,
    CalmonConfig,
    ConfigError,
    Settings,
    load_config,
    load_settings,
)

CONFIG_DIR_ENV = "CALMON_CONFIG_DIR"


def config_dir_from_env() -> str:
    return os.environ.get(CONFIG_DIR_ENV, str(DEFAULT_CONFIG_DIR))


def load_site_settings(config_dir: str | Path) -> Settings:
    """The site's settings for building the definitions. A broken file gives the embedded defaults,
    so the code location still loads; `calmon validate-config` and every command report why."""
    try:
        return load_settings(Path(config_dir) / SETTINGS_FILE)
    except ConfigError:
        return Settings()


class SiteConfigResource(dg.ConfigurableResource):
    """Where the site's configuration lives (default: $CALMON_CONFIG_DIR or ./configs)."""

    config_dir: str = str(DEFAULT_CONFIG_DIR)

    def load(self) -> CalmonConfig:
        return load_config(self.config_dir)
