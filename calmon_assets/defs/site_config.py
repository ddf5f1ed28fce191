"""The site's configuration: the folder with calibration_monitoring.ini and devices.yaml.

The settings are read once, when the definitions load (load_site_settings); the fleet is read fresh
on every use through SiteConfigResource, so an edited devices.yaml takes effect at the next tick.
Fresh means as the files and the environment are now: a parse is reused while both files' bytes and
the environment (${VAR} expands from it) are unchanged, since every step of every check loads the
config and parsing a fleet's devices.yaml costs more than the rest of a step's own work.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import dagster as dg

from calmon_core.config import (
    DEFAULT_CONFIG_DIR,
    DEVICES_FILE,
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


_parsed: dict[Path, tuple[tuple, CalmonConfig]] = {}
_parsed_lock = threading.Lock()


def _inputs(directory: Path) -> tuple:
    """Everything a parse of the folder depends on: both files' bytes (None: unreadable) and the
    environment."""
    contents = []
    for name in (SETTINGS_FILE, DEVICES_FILE):
        try:
            contents.append((directory / name).read_bytes())
        except OSError:
            contents.append(None)
    return (*contents, frozenset(os.environ.items()))


def load_site_config(config_dir: str | Path) -> CalmonConfig:
    """load_config, reusing the last parse of the folder while its inputs are unchanged (a broken
    folder is parsed, and reported, every time). Callers read the config, never change it."""
    directory = Path(config_dir).resolve()
    inputs = _inputs(directory)
    with _parsed_lock:
        hit = _parsed.get(directory)
    if hit is not None and hit[0] == inputs:
        return hit[1]
    config = load_config(directory)
    with _parsed_lock:
        _parsed[directory] = (inputs, config)
    return config


class SiteConfigResource(dg.ConfigurableResource):
    """Where the site's configuration lives (default: $CALMON_CONFIG_DIR or ./configs)."""

    config_dir: str = str(DEFAULT_CONFIG_DIR)

    def load(self) -> CalmonConfig:
        return load_site_config(self.config_dir)
