"""The gauge of a reference scan: which calibration its orientations are measured against.

A reference map's refined rotations are anchored to the telemetry the camera reported while it was
scanned. The first scan of a device defines the device's gauge. Any later scan (a re-collected
reference, a night or a winter bank entry) is registered to an earlier one through their overlap
(calmon_core.reference_bank.register_scan): the registration finds the constant per-angle
correction (true - reported, conventions.md) of the new scan in the earlier scan's gauge, and
`gauge.json` next to the scan's manifest records it ("frame_corrections_deg": per image, for
frames whose own telemetry was off). Loading the reference map applies it, so
offsets against the new scan stay relative to the original calibration. A scan without gauge.json
(or one rebased on purpose) is the origin of its own gauge.

    {"format": "calmon.gauge/1", "gauge_id": "gauge-3f2a...", "correction_deg": {"yaw": 0.8, ...},
     "uncertainty_deg": {...}, "registered_to": "<folder or id of the earlier scan>",
     "method": "registered" | "origin" | "rebased" | "grown", "frames_used": 8, "registered_at": "..."}
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from calmon_core.capture_format import MANIFEST, CaptureFormatError

GAUGE_FILE = "gauge.json"
GAUGE_FORMAT = "calmon.gauge/1"
AXES = ("yaw", "pitch", "roll")
ZERO = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0}


def origin_gauge_id(folder: str | Path) -> str:
    """The id of the gauge a scan defines when it is an origin: from its manifest's content."""
    digest = hashlib.sha256((Path(folder) / MANIFEST).read_bytes()).hexdigest()
    return f"gauge-{digest[:12]}"


def read_gauge(folder: str | Path) -> dict:
    """The scan's gauge record; an origin record when there is no gauge.json. A damaged file is a
    CaptureFormatError naming it (silently falling back would move every offset)."""
    folder = Path(folder)
    path = folder / GAUGE_FILE
    if not path.is_file():
        return {
            "format": GAUGE_FORMAT,
            "gauge_id": origin_gauge_id(folder),
            "correction_deg": dict(ZERO),
            "method": "origin",
        }
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CaptureFormatError(f"{path}: not a readable gauge record: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != GAUGE_FORMAT:
        raise CaptureFormatError(f"{path}: format must be {GAUGE_FORMAT!r}")
    corr = data.get("correction_deg")
    if not isinstance(corr, dict) or any(
        not isinstance(corr.get(a), (int, float)) or not math.isfinite(corr[a]) for a in AXES
    ):
        raise CaptureFormatError(f"{path}: correction_deg must hold finite yaw, pitch and roll")
    if not isinstance(data.get("gauge_id"), str) or not data["gauge_id"]:
        raise CaptureFormatError(f"{path}: gauge_id is missing")
    return data


def gauge_uncertainty(record: dict) -> dict[str, float]:
    """The 1-sigma error of a gauge record's correction per axis (deg): what every offset measured
    against that scan inherits from its registration; zero for an origin. A value that is not a
    finite non-negative number counts as zero only when it is missing."""
    return _sigmas(record.get("uncertainty_deg") or {}, f"gauge {record.get('gauge_id')}: uncertainty_deg")


def frame_uncertainties(record: dict) -> dict[str, dict[str, float]]:
    """Per image, the 1-sigma error of that frame's own orientation (deg), where the record keeps
    one (a grown entry's `frame_uncertainty_deg`); checked as gauge_uncertainty is."""
    frames = record.get("frame_uncertainty_deg") or {}
    where = f"gauge {record.get('gauge_id')}: frame_uncertainty_deg"
    if not isinstance(frames, dict):
        raise CaptureFormatError(f"{where} must map images to yaw, pitch and roll")
    return {image: _sigmas(sigma, f"{where}.{image}") for image, sigma in frames.items()}


def _sigmas(sigma, where: str) -> dict[str, float]:
    if not isinstance(sigma, dict):
        raise CaptureFormatError(f"{where} must hold yaw, pitch and roll")
    out = {}
    for a in AXES:
        v = sigma.get(a, 0.0)
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise CaptureFormatError(f"{where}.{a} must be a number >= 0")
        out[a] = float(v)
    return out


def write_gauge(folder: str | Path, record: dict) -> Path:
    path = Path(folder) / GAUGE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"format": GAUGE_FORMAT, **record}, indent=1))
    tmp.replace(path)
    return path


def apply_gauge(refmap, folder: str | Path):
    """Put the reference map's frames in the scan's gauge (in place; returns refmap). An origin
    keeps its refined rotations; a registered scan's frame i points at its reported orientation +
    the correction (+ its own correction when its telemetry was off)."""
    from calmon_core.conventions import rotation_from_ypr

    record = read_gauge(folder)
    refmap.summary = {
        **refmap.summary,
        "gauge_id": record["gauge_id"],
        "gauge_correction_deg": record["correction_deg"],
        "gauge_uncertainty_deg": gauge_uncertainty(record),
    }
    if record.get("method") not in ("registered",):
        return refmap
    own = record.get("frame_corrections_deg") or {}
    for fr in refmap.frames:
        corr = own.get(fr.image, record["correction_deg"])
        fr.rotation = rotation_from_ypr(*(r + float(corr[a]) for r, a in zip(fr.reported, AXES, strict=True)))
    return refmap
