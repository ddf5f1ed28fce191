"""Partitions: devices (dynamic, synced from devices.yaml) for reference scans, and deployments x
check time for checks: one run checks a deployment's devices for one check time, so a fleet of
1,000 cameras in 10 deployments makes 87,600 partitions a year per asset instead of 8.76 million
(README, "The model that holds").

Partition definitions are fixed when the code location loads, so the cadence and the first day come
from the site settings of $CALMON_CONFIG_DIR, read by the same loader as the resources;
build_definitions refuses another config folder whose partitions would not match them.

Every hour from the first day on is a partition, and the UI counts the ones never checked as
Missing; so the first day is the day the site's checks began: `[schedule] start_date`, or when unset
the day calmon first loaded the site, recorded in the site's object store on that first load and
read back by every later one (the code server after a reload, every run pod, `calmon monitor`), so
partition keys never shift.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg

from calmon_assets.defs.resources import object_store_resource
from calmon_assets.defs.site_config import config_dir_from_env, load_site_settings
from calmon_core.config import ConfigError, ScheduleSettings, Settings
from calmon_core.layout import PARTITIONS_START_KEY
from resources.object_store import ObjectNotFoundError, ObjectStoreError

DEPLOYMENT_DIM = "deployment"
DEVICE_DIM = "device"  # of the device x time partitions checks had before: their runs and events stay readable
TIME_DIM = "time"

device_partitions = dg.DynamicPartitionsDefinition(name="devices")
deployment_partitions = dg.DynamicPartitionsDefinition(name="deployments")


def partitions_start_date(settings: Settings, today: date | None = None) -> str:
    """The partitions' first day: `[schedule] start_date`, else the site's recorded first day
    (recorded as `today`, UTC by default, when the site has none yet)."""
    if settings.schedule.start_date is not None:
        return settings.schedule.start_date
    store = object_store_resource(settings).get_client()
    where = store.uri(PARTITIONS_START_KEY)
    try:
        try:
            text = store.get_bytes(PARTITIONS_START_KEY).decode("utf-8", errors="replace").strip()
        except ObjectNotFoundError:
            text = (today or datetime.now(UTC).date()).isoformat()
            store.put_bytes(PARTITIONS_START_KEY, f"{text}\n".encode())
    except ObjectStoreError as exc:
        raise ConfigError(
            [f"[schedule] start_date is unset and the site's first day at {where} cannot be kept ({exc}); set it"]
        ) from None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ConfigError(
            [f"{where}: {text[:40]!r} is not a day YYYY-MM-DD; fix it or set [schedule] start_date"]
        ) from None


def time_partitions(cadence: str, start_date: str) -> dg.TimeWindowPartitionsDefinition:
    # end_offset=1: the window in progress is a partition too, since a check captures "now".
    if cadence == "daily":
        return dg.DailyPartitionsDefinition(start_date=start_date, end_offset=1)
    return dg.HourlyPartitionsDefinition(start_date=f"{start_date}-00:00", end_offset=1)


_loaded = load_site_settings(config_dir_from_env())
PARTITION_SCHEDULE = ScheduleSettings.model_validate(
    {**_loaded.schedule.model_dump(), "start_date": partitions_start_date(_loaded)}
)
check_time_partitions = time_partitions(PARTITION_SCHEDULE.cadence, PARTITION_SCHEDULE.start_date)  # type: ignore[arg-type]
check_partitions = dg.MultiPartitionsDefinition(
    {DEPLOYMENT_DIM: deployment_partitions, TIME_DIM: check_time_partitions}
)


def same_partitions(settings: Settings) -> bool:
    """Whether a site with these settings has the partitions this code location loaded."""
    return (settings.schedule.cadence, partitions_start_date(settings)) == (
        PARTITION_SCHEDULE.cadence,
        PARTITION_SCHEDULE.start_date,
    )


def check_partition_key(deployment_name: str, time_key: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({DEPLOYMENT_DIM: deployment_name, TIME_DIM: time_key})


def check_partition_parts(partition: str) -> tuple[str, str] | None:
    """(deployment, time key) of a check partition's key string; None for any other string."""
    deployment, sep, time_key = (partition or "").partition("|")
    return (deployment, time_key) if sep and deployment and time_key else None


def current_time_key(moment: datetime) -> str:
    """The time partition that contains `moment` (the check being run now)."""
    return check_time_partitions.get_partition_key_for_timestamp(moment.timestamp())


def check_window_start(time_key: str) -> datetime:
    return check_time_partitions.time_window_for_partition_key(time_key).start.astimezone(UTC)
