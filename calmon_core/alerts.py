"""Whether a new result is alerted, and the Slack message of one check (pure: no I/O, no Slack client here)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from calmon_core.check import status_of
from calmon_core.models import CalibrationResult, CheckStatus

if TYPE_CHECKING:
    from calmon_core.alert_policy import AlertPolicySettings

AXES = ("yaw", "pitch", "roll")
STATUS_EMOJI = {
    CheckStatus.ok: "✅",
    CheckStatus.breach: "🚨",
    CheckStatus.inconclusive: "⚠️",
    CheckStatus.failed: "❌",
}
_MAX_REASON_CHARS = 500  # a traceback in failure_log must not flood the channel


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


def _short(reason: str | None) -> str:
    text = (reason or "no reason recorded").strip().splitlines()
    first = " ".join(line.strip() for line in text if line.strip())
    return first if len(first) <= _MAX_REASON_CHARS else first[: _MAX_REASON_CHARS - 1] + "…"


def format_slack_message(result: CalibrationResult, files_url: str | None = None, recovered: bool = False) -> str:
    """The Slack text of one check: headline with emoji, offsets with uncertainty, files link."""
    status = status_of(result)
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


@dataclass(frozen=True)
class AlertPolicy:
    """How results are alerted: `files_base_url` turns a row's s3:// files location into a link
    (e.g. an S3 console URL prefix); None keeps the location as it is. `settings` is the site's
    [alerts]: with policy state_change a message only when a device changes state
    (calmon_core.alert_policy); without settings, or with every_check, one message per check."""

    files_base_url: str | None = None
    settings: AlertPolicySettings | None = None

    @property
    def state_change(self) -> bool:
        return self.settings is not None and self.settings.policy == "state_change"


@dataclass(frozen=True)
class ResultOrigin:
    """Where a new result came from, as far as alerting cares."""

    backfill: bool = False  # written by a backfill run
    realert: bool = False  # its run asked to be alerted even so (calmon/realert=true)
    status: str | None = None  # the status this result was reported with
    previous_status: str | None = None  # the status reported before for the same check, if any


@dataclass(frozen=True)
class Alert:
    text: str
    status: CheckStatus
    recovered: bool


def skip_reason(origin: ResultOrigin) -> str | None:
    """Why a result is not alerted at all, or None: a backfill (unless re-alerting is asked for),
    or a re-run of a check whose status did not change."""
    if origin.realert:
        return None
    if origin.backfill:
        return "backfill result"
    if origin.previous_status is not None and origin.previous_status == origin.status:
        return "same status as already alerted"
    return None


def recovered(result: CalibrationResult, previous_results: Iterable[CalibrationResult]) -> bool:
    """An ok check whose device's last decided check (ok or breach) before it breached.
    `previous_results` is iterated only for an ok check (it may read the table lazily)."""
    if CheckStatus(result.status) is not CheckStatus.ok:
        return False
    earlier = sorted((r for r in previous_results if r.timestamp < result.timestamp), key=lambda r: r.timestamp)
    decided = [r for r in earlier if CheckStatus(r.status) in (CheckStatus.ok, CheckStatus.breach)]
    return bool(decided) and CheckStatus(decided[-1].status) == CheckStatus.breach


def files_link(files_location: str | None, files_base_url: str | None) -> str | None:
    """`files_base_url` + the location's key (s3://bucket/key -> base/key); the location itself
    without a base URL."""
    if files_location and files_base_url:
        return files_base_url.rstrip("/") + "/" + files_location.split("://", 1)[-1].split("/", 1)[-1]
    return files_location


def decide_alert(
    result: CalibrationResult,
    previous_results: Iterable[CalibrationResult],
    policy: AlertPolicy,
    origin: ResultOrigin = ResultOrigin(),
) -> Alert | None:
    """The Slack alert for a new result, or None when it is not alerted (see skip_reason, and
    with the state_change policy calmon_core.alert_policy.alert_for_check).

    `previous_results` are the device's earlier rows (any order): a recovery (and with
    state_change the device's state) is told from them.
    """
    if skip_reason(origin) is not None:
        return None
    files_url = files_link(result.files_location, policy.files_base_url)
    if policy.state_change:
        # Imported here: alert_policy builds its messages from this module's formatting.
        from calmon_core.alert_policy import AlertKind, alert_for_check

        decided = alert_for_check(result, list(previous_results), policy.settings, files_url=files_url)
        if decided is None:
            return None
        return Alert(text=decided.text, status=status_of(result), recovered=decided.kind is AlertKind.recovered)
    was_recovered = recovered(result, previous_results)
    text = format_slack_message(result, files_url=files_url, recovered=was_recovered)
    return Alert(text=text, status=status_of(result), recovered=was_recovered)
