"""Partitions: devices (dynamic, synced from devices.yaml) and devices x check time."""

from __future__ import annotations

import dagster as dg

from calmon_assets.site import config_dir_from_env
from calmon_core.config import SETTINGS_FILE, ScheduleSettings, load_settings

DEVICE_DIM = "device"
TIME_DIM = "time"

device_partitions = dg.DynamicPartitionsDefinition(name="devices")


def _schedule_settings() -> ScheduleSettings:
    # Partition definitions are fixed when the code location loads; the cadence comes from the
    # site's settings at that moment (a broken file falls back to the default, validate-config says why).
    try:
        return load_settings(f"{config_dir_from_env()}/{SETTINGS_FILE}").schedule
    except ValueError:
        return ScheduleSettings()


_schedule = _schedule_settings()
# end_offset=1: the window in progress is a partition too, since a check captures "now".
if _schedule.cadence == "daily":
    check_time_partitions: dg.TimeWindowPartitionsDefinition = dg.DailyPartitionsDefinition(
        start_date=_schedule.start_date, end_offset=1
    )
else:
    check_time_partitions = dg.HourlyPartitionsDefinition(start_date=f"{_schedule.start_date}-00:00", end_offset=1)

check_partitions = dg.MultiPartitionsDefinition({DEVICE_DIM: device_partitions, TIME_DIM: check_time_partitions})


def check_partition_key(device_id: str, time_key: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({DEVICE_DIM: device_id, TIME_DIM: time_key})
