"""Devices: partitions kept in step with devices.yaml, and a device's endpoints wired to the extractor."""

import dagster as dg

from calmon_assets.defs.devices.sensors import sync_devices_sensor
from calmon_core.config import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(sensors=[sync_devices_sensor])
