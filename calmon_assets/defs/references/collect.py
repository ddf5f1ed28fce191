"""Storing a freshly collected reference scan: registered to the stored reference (its gauge kept)
unless rebased, or added to the stored reference's bank as the entry of one lighting regime."""

from __future__ import annotations

from pathlib import Path

from calmon_assets.defs.references.cache import cached_reference
from calmon_core.capture_format import read_capture, write_capture
from calmon_core.layout import reference_scan_prefix
from calmon_core.reference_bank import BANK_DIR, REGIMES, add_bank_entry, bank_entries, replace_reference
from resources.object_store import ObjectNotFoundError, ObjectStore


def store_reference(
    store: ObjectStore,
    deployment: str,
    device_id: str,
    scan_folder: Path,
    cache_root: Path,
    *,
    rebase: bool = False,
    regime: str | None = None,
) -> dict:
    """Upload the reference that results from `scan_folder` and return its registration (JSON).

    A bank entry needs a stored reference to register to; a plain re-collection without one starts
    a new gauge, as a rebase does."""
    if regime is not None and regime not in REGIMES:
        raise ValueError(f"regime must be one of {', '.join(REGIMES)}, got {regime!r}")
    prefix = reference_scan_prefix(deployment, device_id)
    try:
        previous, _ = cached_reference(store, deployment, device_id, cache_root)
    except ObjectNotFoundError:
        previous = None
    if regime is not None:
        if previous is None:
            raise ValueError(f"{device_id}: no stored reference scan to add a {regime} bank entry to")
        registration = add_bank_entry(previous, scan_folder, regime, regime=regime)
        # The manifest names the entries: caches refresh when the stored manifest changes.
        names = [e.name for e in bank_entries(previous)[1:]]
        write_capture(previous, read_capture(previous).model_copy(update={"bank": names}))
        target = previous
    else:
        if rebase and previous is not None and (previous / BANK_DIR).is_dir():
            # the store keeps what is not overwritten: old-gauge entries would come back with the new scan
            raise ValueError(
                f"{device_id}: the stored reference has bank entries; a rebase would leave them in the old "
                f"gauge under {store.uri(prefix)}/{BANK_DIR}/ (remove them first)"
            )
        target = previous or cache_root / deployment / device_id / "reference_scan"
        registration = replace_reference(target, scan_folder, rebase=rebase)
    store.upload_folder(target, prefix)
    return {**registration.to_json_dict(), **({"bank_entry": regime} if regime else {})}
