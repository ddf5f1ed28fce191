"""Keeping the device partitions in step with devices.yaml: add new devices, never delete history."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from calmon_assets.defs.partitions import device_partitions
from calmon_core.config import Fleet


@dataclass
class DeviceSync:
    added: list[str]
    removed_from_config: list[str]  # kept as partitions: their history stays browsable


def plan_device_sync(instance: dg.DagsterInstance, fleet: Fleet) -> DeviceSync:
    existing = set(instance.get_dynamic_partitions(device_partitions.name))
    wanted = {device.id for _, device in fleet.devices()}
    return DeviceSync(added=sorted(wanted - existing), removed_from_config=sorted(existing - wanted))


def sync_devices(instance: dg.DagsterInstance, fleet: Fleet) -> DeviceSync:
    """Apply the sync directly (CLI and tests); the sensor does the same through a SensorResult."""
    plan = plan_device_sync(instance, fleet)
    if plan.added:
        instance.add_dynamic_partitions(device_partitions.name, plan.added)
    return plan
