"""A device's reference scan in a local cache, refreshed when the stored manifest changed."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from calmon_core.capture_format import read_capture
from calmon_core.layout import reference_scan_prefix
from resources.object_store import ObjectNotFoundError, ObjectStore, ObjectStoreError


def cached_reference(store: ObjectStore, deployment: str, device_id: str, cache_root: Path) -> tuple[Path, str | None]:
    """The local copy and, while the store cannot be reached and the cached copy serves, a note for
    the row saying so. A reference missing from the store raises ObjectNotFoundError: a cached copy
    must not hide that it was deleted on purpose or never collected."""
    prefix = reference_scan_prefix(deployment, device_id)
    local = cache_root / deployment / device_id / "reference_scan"
    cached = local / "manifest.json"
    try:
        remote_manifest = store.get_bytes(f"{prefix}/manifest.json")
    except ObjectNotFoundError:
        raise
    except ObjectStoreError as exc:
        if cached.is_file():
            return local, f"reference scan taken from the local cache: {exc}"
        raise
    if not (cached.is_file() and cached.read_bytes() == remote_manifest):
        if local.exists():
            shutil.rmtree(local)
        store.download_folder(prefix, local)
    return local, None


def reference_age_days(reference: Path) -> float:
    return (datetime.now(UTC) - read_capture(reference).started_at).total_seconds() / 86400
