"""Partitions: devices (dynamic, synced from devices.yaml) and devices x check time.

Partition definitions are fixed when the code location loads, so the cadence comes from the site
settings of $CALMON_CONFIG_DIR, read by the same loader as the resources; build_definitions refuses
another config folder whose cadence would not match them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from calmon_assets.defs.site_config import config_dir_from_env, load_site_settings
from calmon_core.config import ScheduleSettings

DEVICE_DIM = "device"
TIME_DIM = "time"

device_partitions = dg.DynamicPartitionsDefinition(name="devices")


def time_partitions(schedule: ScheduleSettings) -> dg.TimeWindowPartitionsDefinition:
    # end_offset=1: the window in progress is a partition too, since a check captures "now".
    if schedule.cadence == "daily":
        return dg.DailyPartitionsDefinition(start_date=schedule.start_date, end_offset=1)
    return dg.HourlyPartitionsDefinition(start_date=f"{schedule.start_date}-00:00", end_offset=1)


PARTITION_SCHEDULE = load_site_settings(config_dir_from_env()).schedule
check_time_partitions = time_partitions(PARTITION_SCHEDULE)
check_partitions = dg.MultiPartitionsDefinition({DEVICE_DIM: device_partitions, TIME_DIM: check_time_partitions})


def same_partitions(schedule: ScheduleSettings) -> bool:
    """Whether a site with these schedule settings has the partitions this code location loaded."""
    return (schedule.cadence, schedule.start_date) == (PARTITION_SCHEDULE.cadence, PARTITION_SCHEDULE.start_date)


def check_partition_key(device_id: str, time_key: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({DEVICE_DIM: device_id, TIME_DIM: time_key})


def current_time_key(moment: datetime) -> str:
    """The time partition that contains `moment` (the check being run now)."""
    return check_time_partitions.get_partition_key_for_timestamp(moment.timestamp())


def check_window_start(time_key: str) -> datetime:
    return check_time_partitions.time_window_for_partition_key(time_key).start.astimezone(UTC)
