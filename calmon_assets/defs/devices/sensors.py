"""The sync_devices sensor: device and deployment partitions follow devices.yaml."""

import dagster as dg

from calmon_assets.defs.devices.sync import plan_device_sync
from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.config import ConfigError


@dg.sensor(
    name="sync_devices",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a device partition for every device in devices.yaml, and a deployment "
    "partition for every deployment. Those removed from the file keep their partitions, so their "
    "history is never silently deleted.",
)
def sync_devices_sensor(context: dg.SensorEvaluationContext, site: SiteConfigResource):
    try:
        fleet = site.load().fleet
    except ConfigError as exc:
        return dg.SkipReason(f"devices.yaml is broken, partitions unchanged:\n{exc}")
    plan = plan_device_sync(context.instance, fleet)
    if plan.removed_from_config:
        context.log.info(f"not in devices.yaml any more (history kept): {plan.removed_from_config}")
    requests = plan.requests()
    if not requests:
        return dg.SkipReason("device and deployment partitions already match devices.yaml")
    return dg.SensorResult(dynamic_partitions_requests=requests)
