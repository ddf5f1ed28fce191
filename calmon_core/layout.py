"""Names and object-store keys of scans (shared/docs/capture-format.md): the one place for the layout."""

from __future__ import annotations

import re
from datetime import UTC, datetime

DEFAULT_BUCKET = "camera-calibration-monitoring"
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


class UnsafeNameError(ValueError):
    """A deployment or camera name that cannot be a path segment."""


def check_segment(value: str, what: str = "name") -> str:
    """Return value if it is a safe path segment, else raise naming what it is."""
    if not isinstance(value, str) or not value:
        raise UnsafeNameError(f"{what} must be a non-empty string, got {value!r}")
    if value in (".", "..") or ".." in value or not _SAFE_SEGMENT.match(value):
        raise UnsafeNameError(
            f"{what} {value!r} is not a safe path segment (letters, digits, '-', '_' and '.' only, never '..')"
        )
    return value


def format_timestamp(moment: datetime) -> str:
    """UTC ISO 8601 basic form used in query_scan keys, e.g. 20261124T130000Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def device_prefix(deployment: str, camera: str) -> str:
    return f"{check_segment(deployment, 'deployment')}/{check_segment(camera, 'camera')}"


def reference_scan_prefix(deployment: str, camera: str) -> str:
    return f"{device_prefix(deployment, camera)}/reference_scan"


def query_scan_prefix(deployment: str, camera: str, moment: datetime | str) -> str:
    stamp = moment if isinstance(moment, str) else format_timestamp(moment)
    parse_timestamp(stamp)  # refuses anything that is not the documented form
    return f"{device_prefix(deployment, camera)}/query_scan/{stamp}"


# The day calmon first loaded the site: its partitions' start when [schedule] start_date is unset.
# "calmon-site" is a deployment name no site uses for cameras (the key is one file, not a device).
PARTITIONS_START_KEY = "calmon-site/partitions_start_date"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key.lstrip('/')}"
