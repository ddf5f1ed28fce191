"""Estimating one check's offsets from its capture and the device's reference scan: the work behind
the calibration_offsets asset. Problems become words here (why there is no estimate, notes beside
one); calmon_core.check.evaluate_check turns them into the row."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calmon_assets.defs import cpu_slots
from calmon_assets.defs.references.cache import cached_reference, reference_age_days
from calmon_assets.defs.references.collect import store_grown_entry
from calmon_core.capture_format import CaptureFormatError
from calmon_core.check import CaptureOutcome, no_reference_reason
from calmon_core.diagnostics import SUFFIX as DIAGNOSTIC_SUFFIX
from calmon_core.estimation import ReferenceScanError, estimate_offsets
from calmon_core.gauge import read_gauge
from calmon_core.layout import query_scan_prefix
from calmon_core.reference_bank import bank_entries, estimate_with_bank, grow_from_check, lighting_note, query_regime
from resources.object_store import ObjectNotFoundError, ObjectStore, ObjectStoreError


@dataclass
class Measurement:
    estimate: dict[str, Any] | None = None  # the estimator's JSON object
    failure: str | None = None  # why there is no estimate
    notes: list[str] = field(default_factory=list)  # problems beside the estimate
    reference_age_days: float | None = None
    gauge_id: str | None = None  # the reference gauge the offsets are measured against
    diagnostic_picture: bytes | None = None  # the first frame's picture of matches and view outlines
    diagnostic_uri: str | None = None  # where the full-size picture is stored


def _reference(
    store: ObjectStore, outcome: CaptureOutcome, cache_root: Path
) -> tuple[Path | None, str | None, Measurement]:
    device_id = outcome.device_id
    try:
        reference, note = cached_reference(store, outcome.deployment_name, device_id, cache_root)
        return (
            reference,
            None,
            Measurement(notes=[note] if note else [], reference_age_days=reference_age_days(reference)),
        )
    except ObjectNotFoundError as exc:
        return None, no_reference_reason(device_id, exc), Measurement()
    except ObjectStoreError as exc:  # the scan may be fine: nothing for the user to redo
        reason = f"reference scan for {device_id} could not be fetched, the object store is unreachable ({exc})"
        return None, reason, Measurement()
    except Exception as exc:  # unreadable reference: the check still gets its row
        return None, no_reference_reason(device_id, exc), Measurement()


def _query_folder(store: ObjectStore, outcome: CaptureOutcome, cache_root: Path) -> Path:
    """The capture's local folder, or (a backfill on another machine) a download of the stored one."""
    if outcome.local_folder and (Path(outcome.local_folder) / "manifest.json").is_file():
        return Path(outcome.local_folder)
    prefix = query_scan_prefix(outcome.deployment_name, outcome.device_id, outcome.query_key)
    target = cache_root / outcome.deployment_name / outcome.device_id / "query_scan" / outcome.query_key
    if target.exists():
        shutil.rmtree(target)
    return store.download_folder(prefix, target)


def diagnostics_key(outcome: CaptureOutcome, name: str) -> str:
    """The object-store key of one of a check's pictures, beside its query capture."""
    return f"{query_scan_prefix(outcome.deployment_name, outcome.device_id, outcome.query_key)}/diagnostics/{name}"


def _store_diagnostics(store: ObjectStore, outcome: CaptureOutcome, pictures: list[Path], log) -> str | None:
    """Store the pictures; the first one's URI, if it was stored."""
    first = None
    for picture in pictures:
        try:
            store.put_file(diagnostics_key(outcome, picture.name), picture)
            first = first or store.uri(diagnostics_key(outcome, picture.name))
        except Exception as exc:  # a missing picture must not lose the row
            log.warning(f"diagnostic picture not stored: {exc}")
    return first


def _grow_bank(
    store: ObjectStore, outcome: CaptureOutcome, reference: Path, query: Path, banked, measurement: Measurement, log
) -> None:
    try:
        added = grow_from_check(reference, query, banked)
        if added:
            store_grown_entry(store, outcome.deployment_name, outcome.device_id, reference, banked.regime)
            measurement.notes.append(f"bank entry {banked.regime} grew by {added} frame(s) of this check")
    except Exception as exc:  # the bank is a help for later checks; this one's row stands
        shutil.rmtree(reference, ignore_errors=True)  # the next check downloads the stored copy again
        if log is not None:
            log.warning(f"{outcome.device_id}: bank entry {banked.regime} not grown: {exc}")


def measure_offsets(
    store: ObjectStore,
    outcome: CaptureOutcome,
    cache_root: Path,
    threshold_deg: float,
    log,
    grow_bank: bool = False,
) -> Measurement:
    """The estimate of a successful capture, or why there is none; nothing for a failed capture.
    grow_bank: a confident dusk or night check adds its frames to the device's bank (stored)."""
    if not outcome.ok:
        return Measurement()
    reference, failure, measurement = _reference(store, outcome, cache_root)
    if reference is None:
        measurement.failure = failure
        return measurement
    try:
        measurement.gauge_id = read_gauge(reference)["gauge_id"]
        query = _query_folder(store, outcome, cache_root)
        diagnostics = query / "diagnostics"
        with cpu_slots.CPU_SLOTS:
            if query_regime(query) == "day" and len(bank_entries(reference)) == 1:
                measurement.estimate = estimate_offsets(
                    reference, query, threshold_deg=threshold_deg, diagnostics_dir=diagnostics
                ).to_json_dict()
            else:  # the bank picks the entry per frame and knows when the dark explains a failure
                banked = estimate_with_bank(reference, query, threshold_deg=threshold_deg, diagnostics_dir=diagnostics)
                measurement.estimate = banked.to_json_dict()
                if note := lighting_note(banked):
                    measurement.notes.append(note)
                if grow_bank:
                    _grow_bank(store, outcome, reference, query, banked, measurement, log)
        pictures = sorted(diagnostics.glob(f"*{DIAGNOSTIC_SUFFIX}"))
        if pictures:
            measurement.diagnostic_picture = pictures[0].read_bytes()
            if outcome.files_location:
                measurement.diagnostic_uri = _store_diagnostics(store, outcome, pictures, log)
    except ReferenceScanError as exc:
        shutil.rmtree(reference, ignore_errors=True)  # a corrupt copy must not outlive its repair
        measurement.failure = no_reference_reason(outcome.device_id, exc)
    except CaptureFormatError as exc:
        measurement.failure = f"query capture unreadable: {exc}"
    return measurement
