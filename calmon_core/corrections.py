"""The current correction of a device: what the analytics that map pixels to the world apply until
someone fixes the camera (true = reported + offset, per angle).

It is the latest conclusive check's offsets ± σ, since the first check of the unbroken run of
conclusive checks that agree with it (inconclusive and failed checks between them are gaps, not
changes), relative to the reference gauge the estimate was measured against.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Sequence

from calmon_core.models import CalibrationResult, CheckStatus

AXES = ("yaw", "pitch", "roll")
CONCLUSIVE = (CheckStatus.ok, CheckStatus.breach)
# two checks agree when every angle differs by at most this many combined σ, or by this floor (°)
AGREE_SIGMAS = 3.0
AGREE_FLOOR_DEG = 0.05
TOPIC_FIELDS = ("deployment", "device")


def topic_problem(template: str) -> str | None:
    """Why `template` is not a usable topic template (None: it is)."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        return f"{template!r} is not a topic template: {exc}"
    unknown = sorted(names - set(TOPIC_FIELDS))
    if unknown:
        return f"{template!r} names {unknown}; a topic may use {{deployment}} and {{device}} only"
    if any(c in template for c in "+#") or not template.strip("/"):
        return f"{template!r} is not a topic one can publish to (no wildcards + #, not empty)"
    return None


def correction_topic(template: str, deployment: str, device: str) -> str:
    return template.format(deployment=deployment, device=device)


def _conclusive(row: CalibrationResult) -> bool:
    return CheckStatus(row.status) in CONCLUSIVE and all(v is not None for v in row.offsets().values())


def _agree(a: CalibrationResult, b: CalibrationResult) -> bool:
    sa, sb = a.uncertainties(), b.uncertainties()
    for axis in AXES:
        sigma = math.hypot(sa[axis] or 0.0, sb[axis] or 0.0)
        if abs(a.offsets()[axis] - b.offsets()[axis]) > max(AGREE_SIGMAS * sigma, AGREE_FLOOR_DEG):  # type: ignore[operator]
            return False
    return True


def current_correction(rows: Sequence[CalibrationResult], gauge_id: str | None) -> dict | None:
    """The device's current correction from its rows (any order, one device); None when no check
    was ever conclusive."""
    conclusive = sorted((r for r in rows if _conclusive(r)), key=lambda r: r.check_partition)
    if not conclusive:
        return None
    latest = conclusive[-1]
    since = latest
    for row in reversed(conclusive[:-1]):
        if not _agree(row, latest):
            break
        since = row
    return {
        "device": latest.device_id,
        "deployment": latest.deployment_name,
        "offsets_deg": {a: round(latest.offsets()[a], 4) for a in AXES},  # type: ignore[arg-type]
        "uncertainty_deg": {a: None if (s := latest.uncertainties()[a]) is None else round(s, 4) for a in AXES},
        "apply": "true = reported + offset, per angle (degrees)",
        "status": CheckStatus(latest.status).value,
        "threshold_deg": latest.threshold_deg,
        "measured_at": latest.timestamp.isoformat(),
        "check_partition": latest.check_partition,
        "since": since.timestamp.isoformat(),
        "since_check_partition": since.check_partition,
        "reference_gauge": gauge_id,
        "algorithm_version": latest.algorithm_version,
    }


def correction_payload(correction: dict) -> bytes:
    return json.dumps(correction, sort_keys=True).encode()
