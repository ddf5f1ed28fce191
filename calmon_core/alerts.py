"""Alert rules and the Slack message of one check (pure: no I/O, no Slack client here)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from calmon_core.models import CalibrationResult, CheckStatus

AXES = ("yaw", "pitch", "roll")
STATUS_EMOJI = {
    CheckStatus.ok: "✅",
    CheckStatus.breach: "🚨",
    CheckStatus.inconclusive: "⚠️",
    CheckStatus.failed: "❌",
}
_MAX_REASON_CHARS = 500  # a traceback in failure_log must not flood the channel


def is_breach(offsets: dict[str, float | None], threshold_deg: float) -> bool:
    """True when any known offset exceeds the threshold in magnitude (unknown axes are ignored)."""
    return any(value is not None and math.isfinite(value) and abs(value) > threshold_deg for value in offsets.values())


def classify(
    success: bool,
    offsets: dict[str, float | None] | None,
    threshold_deg: float,
    capture_failed: bool,
) -> CheckStatus:
    """ok / breach / inconclusive (captured, estimator could not tell) / failed (no usable capture)."""
    if capture_failed:
        return CheckStatus.failed
    known = {k: v for k, v in (offsets or {}).items() if v is not None and math.isfinite(v)}
    if not success or not known:
        return CheckStatus.inconclusive
    return CheckStatus.breach if is_breach(known, threshold_deg) else CheckStatus.ok


def format_offset(axis: str, value: float | None, uncertainty: float | None) -> str:
    """'yaw +0.712° ±0.004°'; 'yaw n/a' when the axis is unknown."""
    if value is None or not math.isfinite(value):
        return f"{axis} n/a"
    text = f"{axis} {value:+.3f}°"
    if uncertainty is not None and math.isfinite(uncertainty):
        text += f" ±{uncertainty:.3f}°"
    return text


def _check_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _status(result: CalibrationResult) -> CheckStatus:
    # Rows from older writers may lack a trustworthy status: the offsets decide, like classify.
    status = CheckStatus(result.status)
    if status in (CheckStatus.ok, CheckStatus.breach):
        return classify(True, result.offsets(), result.threshold_deg, capture_failed=False)
    return status


def _short(reason: str | None) -> str:
    text = (reason or "no reason recorded").strip().splitlines()
    first = " ".join(line.strip() for line in text if line.strip())
    return first if len(first) <= _MAX_REASON_CHARS else first[: _MAX_REASON_CHARS - 1] + "…"


def format_slack_message(result: CalibrationResult, files_url: str | None = None, recovered: bool = False) -> str:
    """The Slack text of one check: headline with emoji, offsets with uncertainty, files link."""
    status = _status(result)
    where = f"*{result.deployment_name}* / *{result.device_id}*"
    threshold = f"{result.threshold_deg:g}°"
    if status is CheckStatus.breach:
        headline = f"🚨 {where}: calibration offset above {threshold}"
    elif status is CheckStatus.ok and recovered:
        headline = f"✅ {where}: recovered, back within {threshold}"
    elif status is CheckStatus.ok:
        headline = f"✅ {where}: within {threshold}"
    elif status is CheckStatus.inconclusive:
        headline = f"⚠️ {where}: inconclusive, the estimator could not tell"
    else:
        headline = f"❌ {where}: check failed"
    lines = [headline, f"check time: {_check_time(result.timestamp)} (partition {result.check_partition})"]
    if status is not CheckStatus.failed:
        offsets, uncertainties = result.offsets(), result.uncertainties()
        lines.append("offsets: " + ", ".join(format_offset(a, offsets[a], uncertainties[a]) for a in AXES))
    if status in (CheckStatus.failed, CheckStatus.inconclusive) and (
        result.failure_log or status is CheckStatus.failed
    ):
        lines.append(f"reason: {_short(result.failure_log)}")
    elif result.failure_log:  # measured, but something went wrong beside it (e.g. files not stored)
        lines.append(f"note: {_short(result.failure_log)}")
    details = [f"mode {result.mode}"]
    if result.inliers is not None:
        details.append(f"{result.inliers} inliers")
    if result.frames_used is not None:
        details.append(f"{result.frames_used} frames")
    lines.append(" · ".join(details))
    link = files_url or result.files_location
    if link:
        # Slack only turns http(s) links into links; an s3:// URI is shown as text to copy.
        lines.append(f"files: <{link}>" if link.startswith(("http://", "https://")) else f"files: {link}")
    return "\n".join(lines)
