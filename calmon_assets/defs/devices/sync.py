"""Keeping the device and deployment partitions in step with devices.yaml: add new ones, never
delete history."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from calmon_assets.defs.partitions import deployment_partitions, device_partitions
from calmon_core.config import Fleet


@dataclass
class DeviceSync:
    added: list[str]
    removed_from_config: list[str]  # kept as partitions: their history stays browsable
    deployments_added: list[str] = field(default_factory=list)

    def requests(self) -> list:
        """The sensor's dynamic-partition requests for what is to be added."""
        out = []
        if self.added:
            out.append(device_partitions.build_add_request(self.added))
        if self.deployments_added:
            out.append(deployment_partitions.build_add_request(self.deployments_added))
        return out


def plan_device_sync(instance: dg.DagsterInstance, fleet: Fleet) -> DeviceSync:
    existing = set(instance.get_dynamic_partitions(device_partitions.name))
    wanted = {device.id for _, device in fleet.devices()}
    deployments = set(instance.get_dynamic_partitions(deployment_partitions.name))
    return DeviceSync(
        added=sorted(wanted - existing),
        removed_from_config=sorted(existing - wanted),
        deployments_added=sorted({d.name for d in fleet.deployments} - deployments),
    )


def sync_devices(instance: dg.DagsterInstance, fleet: Fleet) -> DeviceSync:
    """Apply the sync directly (CLI and tests); the sensor does the same through a SensorResult."""
    plan = plan_device_sync(instance, fleet)
    if plan.added:
        instance.add_dynamic_partitions(device_partitions.name, plan.added)
    if plan.deployments_added:
        instance.add_dynamic_partitions(deployment_partitions.name, plan.deployments_added)
    return plan
