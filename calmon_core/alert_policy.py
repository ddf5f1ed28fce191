"""When a check becomes a Slack message: the alert policy (pure: rows in, decisions out).

Two policies:

- `state_change` (the default): a message when a device changes state, not for every check —
  🚨 into breach, ✅ back within threshold, ❌ into failure, ⚠️ persistently inconclusive, and one
  ⏳ early warning per drift episode. A breach is declared on evidence: |offset| − k·σ above the
  threshold in N of the last M conclusive checks; it ends when N of the last M are below
  threshold − margin (hysteresis, so a camera at the threshold does not flap). Night
  inconclusives and checks inside a maintenance window are expected: they are no alert and no
  evidence. A daily digest sums the fleet up.
- `every_check`: one message per check, what calmon always did (a site may choose it).

A device's state is a fold over its checks in the schedule's order (`DeviceState.advance`); `alert_for_check`
folds the previous rows and asks what the new one changes, so the caller keeps no state.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from calmon_core.alerts import AXES, format_offset, format_slack_message
from calmon_core.forecast import (
    AxisForecast,
    ForecastMethod,
    KalmanSettings,
    TrendHistory,
    TrendWindow,
    describe,
    fastest,
    soonest,
    to_days,
)
from calmon_core.models import CalibrationResult, CheckStatus

_HOURS = re.compile(r"^\s*(\d{1,2})\s*-\s*(\d{1,2})\s*$")


class MaintenanceWindow(BaseModel):
    """A time when a device (or a whole deployment) is worked on: its checks are not alerts."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime
    device_id: str | None = None
    deployment_name: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindow:
        if self.end <= self.start:
            raise ValueError(f"maintenance window ends ({self.end}) before it starts ({self.start})")
        if self.device_id is None and self.deployment_name is None:
            raise ValueError("a maintenance window names a device_id or a deployment_name")
        return self

    def covers(self, deployment_name: str, device_id: str, moment: datetime) -> bool:
        if self.device_id is not None and self.device_id != device_id:
            return False
        if self.deployment_name is not None and self.deployment_name != deployment_name:
            return False
        return _utc(self.start) <= _utc(moment) < _utc(self.end)


def parse_maintenance(text: str) -> list[MaintenanceWindow]:
    """`[alerts] maintenance`: windows separated by ';' or new lines, each
    'device NAME START/END' or 'deployment NAME START/END' with ISO times (UTC unless a zone is
    given), e.g. 'deployment harbor-east 2026-12-03T08:00/2026-12-03T12:00'."""
    windows = []
    for chunk in re.split(r"[;\n]", text):
        chunk = chunk.strip()
        if not chunk:
            continue
        parts = chunk.split()
        if len(parts) != 3 or parts[0] not in ("device", "deployment") or "/" not in parts[2]:
            raise ValueError(f"maintenance window {chunk!r} is not 'device|deployment NAME START/END'")
        start_text, end_text = parts[2].split("/", 1)
        try:
            start, end = (datetime.fromisoformat(x.replace("Z", "+00:00")) for x in (start_text, end_text))
        except ValueError:
            raise ValueError(f"maintenance window {chunk!r}: times must be ISO, e.g. 2026-12-03T08:00") from None
        key = "device_id" if parts[0] == "device" else "deployment_name"
        windows.append(MaintenanceWindow(start=_utc(start), end=_utc(end), **{key: parts[1]}))
    return windows


class AlertPolicySettings(BaseModel):
    """[alerts] of calibration_monitoring.ini. Defaults chosen by benchmarks/alert_replay.py."""

    policy: Literal["state_change", "every_check"] = "state_change"
    k_sigma: float = Field(default=1.0, ge=0)  # evidence: |offset| − k·σ above the threshold
    breach_checks: int = Field(default=2, ge=1)  # N ...
    breach_window: int = Field(default=2, ge=1)  # ... of the last M conclusive checks
    agreement_deg: float = Field(default=0.1, gt=0)  # breach votes count together within this (or 4σ)
    recovery_margin_deg: float = Field(default=0.1, ge=0)  # recovered below threshold − margin
    failed_checks: int = Field(default=3, ge=1)  # failed checks in a row before ❌
    failure_quiet_hours: float = Field(default=24, ge=0)  # a device failing again this soon: digest only
    inconclusive_checks: int = Field(default=6, ge=1)  # unexpected inconclusives in a row before ⚠️
    night_hours: str | None = "18-7"  # UTC hours [start, end) in which an inconclusive is expected
    maintenance: list[MaintenanceWindow] = []
    digest_hour: int = Field(default=8, ge=0, le=23)  # UTC hour of the daily digest
    early_warning_days: float = Field(default=3.0, gt=0)  # ⏳ when the forecast falls under this
    forecast_method: ForecastMethod = ForecastMethod.bent_line
    forecast_window_checks: int = Field(default=336, ge=3)  # the newest checks a trend may rest on
    forecast_min_checks: int = Field(default=24, ge=3)  # no forecast on less evidence than this
    ui_base_url: str | None = None  # the Dagster UI, for links to a device's asset page

    @field_validator("night_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        match = _HOURS.match(value)
        if not match or not all(0 <= int(h) <= 23 for h in match.groups()):
            raise ValueError(f"night_hours {value!r} is not 'START-END' with hours 0..23, e.g. '18-7'")
        return value

    @model_validator(mode="after")
    def _n_of_m(self) -> AlertPolicySettings:
        if self.breach_checks > self.breach_window:
            raise ValueError(f"breach_checks ({self.breach_checks}) exceeds breach_window ({self.breach_window})")
        return self

    def is_night(self, moment: datetime) -> bool:
        if self.night_hours is None:
            return False
        start, end = (int(h) for h in _HOURS.match(self.night_hours).groups())  # type: ignore[union-attr]
        hour = _utc(moment).hour
        return start <= hour < end if start <= end else hour >= start or hour < end

    def in_maintenance(self, result: CalibrationResult) -> bool:
        return any(w.covers(result.deployment_name, result.device_id, result.timestamp) for w in self.maintenance)


class AlertKind(StrEnum):
    breach = "breach"  # 🚨 into breach
    recovered = "recovered"  # ✅ back within threshold
    failing = "failing"  # ❌ into failure
    inconclusive = "inconclusive"  # ⚠️ persistently inconclusive
    early_warning = "early_warning"  # ⏳ heading for the threshold
    check = "check"  # every_check: one message per check


class PolicyAlert(BaseModel):
    kind: AlertKind
    deployment_name: str
    device_id: str
    check_partition: str
    timestamp: datetime
    text: str


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _known(values: dict[str, float | None]) -> dict[str, float]:
    return {k: v for k, v in values.items() if v is not None and math.isfinite(v)}


def breach_evidence(
    result: CalibrationResult, threshold_deg: float, k_sigma: float
) -> frozenset[tuple[str, int, float, float]]:
    """(axis, sign, offset, σ) of every axis whose offset is above the threshold even after taking
    k σ off its magnitude."""
    sigmas = result.uncertainties()
    return frozenset(
        (axis, 1 if value > 0 else -1, value, sigmas.get(axis) or 0.0)
        for axis, value in _known(result.offsets()).items()
        if abs(value) - k_sigma * (sigmas.get(axis) or 0.0) > threshold_deg
    )


def _agreeing(votes: Iterable[frozenset[tuple[str, int, float, float]]], agreement_deg: float) -> int:
    """The most checks whose breach evidence agrees: the same axis, the same way, offsets within
    agreement_deg (or 4 σ) of each other. A wrong match throws a random axis a random way by a
    random amount; a camera that moved stays where it moved to."""
    groups: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for vote in votes:
        for axis, sign, value, sigma in vote:
            groups.setdefault((axis, sign), []).append((value, sigma))
    best = 0
    for members in groups.values():
        members.sort()
        start = 0
        for end in range(len(members)):
            while True:
                window = members[start : end + 1]
                tolerance = max(agreement_deg, 4 * max(sg for _, sg in window))
                if members[end][0] - members[start][0] <= tolerance:
                    break
                start += 1
            best = max(best, end - start + 1)
    return best


def recovery_evidence(result: CalibrationResult, threshold_deg: float, margin_deg: float) -> bool:
    """Every known axis is below threshold − margin."""
    known = _known(result.offsets())
    return bool(known) and all(abs(v) < threshold_deg - margin_deg for v in known.values())


def is_conclusive(result: CalibrationResult) -> bool:
    return CheckStatus(result.status) in (CheckStatus.ok, CheckStatus.breach) and bool(_known(result.offsets()))


def is_expected_gap(result: CalibrationResult, settings: AlertPolicySettings) -> bool:
    """A check that is no alert and no evidence: any check inside a maintenance window (the
    camera is being worked on), or an inconclusive one at night (too dark for features)."""
    if settings.in_maintenance(result):
        return True
    return CheckStatus(result.status) is CheckStatus.inconclusive and settings.is_night(result.timestamp)


@dataclass
class DeviceState:
    """What the policy remembers of one device, built by folding its checks in time order."""

    settings: AlertPolicySettings
    breach_since: datetime | None = None
    breach_peak_deg: float = 0.0
    failing_since: datetime | None = None
    failed_in_a_row: int = 0
    last_failing_alert: datetime | None = None
    inconclusive_in_a_row: int = 0
    _warned: bool = False  # ⏳ sent in this episode, as of the checks before `_undecided`
    # checks whose forecast could change `warned` but was not computed yet (see `warned`)
    _undecided: list[tuple[TrendWindow, float]] = field(default_factory=list)
    last_good: CalibrationResult | None = None  # newest conclusive check
    last: CalibrationResult | None = None
    breach_votes: deque = field(default_factory=deque)
    recovery_votes: deque = field(default_factory=deque)
    trends: TrendHistory = field(init=False)

    def __post_init__(self) -> None:
        self.breach_votes = deque(maxlen=self.settings.breach_window)
        self.recovery_votes = deque(maxlen=self.settings.breach_window)
        self.trends = TrendHistory(window_checks=self.settings.forecast_window_checks, kalman=KalmanSettings())

    @property
    def in_breach(self) -> bool:
        return self.breach_since is not None

    def forecast(self, threshold_deg: float) -> list[AxisForecast]:
        return self._forecast(self.trends.window(), threshold_deg)

    def _forecast(self, window: TrendWindow, threshold_deg: float) -> list[AxisForecast]:
        if len(window) < self.settings.forecast_min_checks:
            return []
        return window.forecast(threshold_deg, self.settings.forecast_method)

    def _days_to_threshold(self, window: TrendWindow, threshold_deg: float) -> float | None:
        first = soonest(self._forecast(window, threshold_deg))
        return first.days_to_threshold if first is not None else None

    def _decides_warned(self, days: float | None) -> bool | None:
        """What a check with this forecast leaves `warned` at: True under the horizon, False clearly
        beyond it (twice the horizon, so a forecast hovering at it does not flicker), None between
        (unchanged)."""
        horizon = self.settings.early_warning_days
        if days is not None and days <= horizon:
            return True
        if days is None or days > 2 * horizon:
            return False
        return None

    @property
    def warned(self) -> bool:
        """⏳ was sent in this episode. The newest check that decides it is the one that counts, so
        the undecided checks are forecast newest first and only until one decides: a device far
        from its threshold costs one forecast, not one per check of its history."""
        while self._undecided:
            window, threshold = self._undecided.pop()
            decided = self._decides_warned(self._days_to_threshold(window, threshold))
            if decided is not None:
                self.warned = decided
        return self._warned

    @warned.setter
    def warned(self, value: bool) -> None:
        self._warned = value
        self._undecided.clear()

    def advance(self, result: CalibrationResult, decide: bool = True) -> AlertKind | None:
        """Take one check (newer than every check before it); the state change it makes, if any.

        decide=False leaves the ⏳ decision for later (None is returned where ⏳ might have been):
        the same state, for a caller that only wants the state after many checks."""
        s = self.settings
        self.last = result
        if is_expected_gap(result, s):
            return None
        status = CheckStatus(result.status)
        if status is CheckStatus.failed:
            self.inconclusive_in_a_row = 0
            self.failed_in_a_row += 1
            if self.failing_since is None and self.failed_in_a_row >= s.failed_checks:
                self.failing_since = result.timestamp
                quiet = timedelta(hours=s.failure_quiet_hours)
                recent = self.last_failing_alert is not None and result.timestamp - self.last_failing_alert < quiet
                self.last_failing_alert = result.timestamp
                return None if recent else AlertKind.failing
            return None
        self.failed_in_a_row = 0
        self.failing_since = None
        if not is_conclusive(result):
            self.inconclusive_in_a_row += 1
            if self.inconclusive_in_a_row == s.inconclusive_checks:
                return AlertKind.inconclusive
            return None
        self.inconclusive_in_a_row = 0
        self.last_good = result
        threshold = result.threshold_deg
        self.breach_votes.append(breach_evidence(result, threshold, s.k_sigma))
        self.recovery_votes.append(recovery_evidence(result, threshold, s.recovery_margin_deg))
        self.trends.add(to_days(result.timestamp), result.offsets(), result.uncertainties())
        worst = max(abs(v) for v in _known(result.offsets()).values())
        if not self.in_breach:
            if _agreeing(self.breach_votes, s.agreement_deg) >= s.breach_checks:
                self.breach_since, self.breach_peak_deg = result.timestamp, worst
                self.recovery_votes.clear()
                return AlertKind.breach
            if decide:
                return self._early_warning(threshold)
            self._undecided.append((self.trends.window(), threshold))
            return None
        self.breach_peak_deg = max(self.breach_peak_deg, worst)
        if sum(self.recovery_votes) >= s.breach_checks:
            self.breach_since, self.breach_peak_deg, self.warned = None, 0.0, False
            self.breach_votes.clear()
            self.trends.clear()  # a repaired camera starts a new trend
            return AlertKind.recovered
        return None

    def _early_warning(self, threshold_deg: float) -> AlertKind | None:
        decided = self._decides_warned(self._days_to_threshold(self.trends.window(), threshold_deg))
        if decided is None:
            return None
        if not decided:
            self.warned = False
            return None
        was = self.warned  # read only here: the one case that needs the undecided checks
        self.warned = True
        return None if was else AlertKind.early_warning


def check_order(result: CalibrationResult) -> tuple[str, datetime]:
    """Checks in the schedule's order: by partition (time keys sort as text), then capture time. A
    failed check is stamped with its partition's start, a measured one with its capture time, and a
    late run of an old partition is still that partition's check."""
    return (result.check_partition, _utc(result.timestamp))


def fold(results: Iterable[CalibrationResult], settings: AlertPolicySettings) -> DeviceState:
    state = DeviceState(settings)
    for result in sorted(results, key=check_order):
        state.advance(result, decide=False)
    return state


# ----------------------------------------------------------------------------- messages


def asset_page_url(ui_base_url: str | None, result: CalibrationResult) -> str | None:
    """The device's calibration_offsets page in the Dagster UI (partition preselected)."""
    if not ui_base_url:
        return None
    from urllib.parse import quote

    partition = quote(f"{result.device_id}|{result.check_partition}", safe="")
    return f"{ui_base_url.rstrip('/')}/assets/calibration_offsets?partition={partition}"


def _since(moment: datetime, now: datetime) -> str:
    hours = (_utc(now) - _utc(moment)).total_seconds() / 3600
    ago = f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.1f} days"
    return f"{_utc(moment).strftime('%Y-%m-%d %H:%M UTC')} ({ago} ago)"


def format_alert(
    kind: AlertKind,
    result: CalibrationResult,
    state: DeviceState,
    files_url: str | None = None,
    recovered: bool = False,
) -> str:
    """The Slack text of a state change: the check's own message plus why it is sent now."""
    s = state.settings
    link = files_url or result.files_location
    if kind is AlertKind.early_warning:
        first = soonest(state.forecast(result.threshold_deg))
        where = f"*{result.deployment_name}* / *{result.device_id}*"
        offsets, sigmas = result.offsets(), result.uncertainties()
        lines = [
            f"⏳ {where}: drifting towards the {result.threshold_deg:g}° threshold",
            describe(first, result.threshold_deg) if first else "trend heading to the threshold",
            "latest: " + ", ".join(format_offset(a, offsets[a], sigmas[a]) for a in AXES),
            f"check time: {_utc(result.timestamp).strftime('%Y-%m-%d %H:%M UTC')} (partition {result.check_partition})",
        ]
        if link:
            lines.append(f"files: <{link}>" if link.startswith(("http://", "https://")) else f"files: {link}")
    else:
        text = format_slack_message(result, files_url=link, recovered=kind is AlertKind.recovered or recovered)
        lines = text.split("\n")
        if kind is AlertKind.breach:
            checks = (
                f"{s.breach_checks} checks in a row"
                if s.breach_checks == s.breach_window
                else f"{s.breach_checks} of the last {s.breach_window} checks"
            )
            lines.insert(1, f"{checks} beyond {result.threshold_deg:g}° the same way, by more than {s.k_sigma:g}σ")
        elif kind is AlertKind.failing:
            lines[0] += f" ({state.failed_in_a_row} checks in a row)"
        elif kind is AlertKind.inconclusive:
            lines[0] += f" ({state.inconclusive_in_a_row} checks in a row)"
            if state.last_good is not None:
                lines.insert(1, f"last good check: {_since(state.last_good.timestamp, result.timestamp)}")
    page = asset_page_url(s.ui_base_url, result)
    if page:
        lines.append(f"dagster: <{page}>")
    return "\n".join(lines)


def alert_for_check(
    result: CalibrationResult,
    previous_results: Sequence[CalibrationResult],
    policy: AlertPolicySettings,
    files_url: str | None = None,
) -> PolicyAlert | None:
    """The message (if any) this new check calls for, given the device's earlier checks.

    every_check: always one, today's text (✅ recovered when the last decided check before it in
    time breached).
    state_change: only when the check changes the device's state (see the module docstring); the
    checks before it are those of earlier partitions (a re-run of an old partition is judged on
    what came before it, not on what came after)."""
    if policy.policy == "every_check":
        moment = _utc(result.timestamp)
        earlier = [r for r in previous_results if _utc(r.timestamp) < moment]
        recovered = False
        if CheckStatus(result.status) is CheckStatus.ok:
            decided = [r for r in sorted(earlier, key=lambda r: _utc(r.timestamp)) if is_conclusive(r)]
            recovered = bool(decided) and CheckStatus(decided[-1].status) is CheckStatus.breach
        text = format_slack_message(result, files_url=files_url or result.files_location, recovered=recovered)
        page = asset_page_url(policy.ui_base_url, result)
        if page:
            text += f"\ndagster: <{page}>"
        return _alert(AlertKind.check, result, text)
    state = fold((r for r in previous_results if r.check_partition < result.check_partition), policy)
    kind = state.advance(result)
    if kind is None:
        return None
    return _alert(kind, result, format_alert(kind, result, state, files_url=files_url))


def _alert(kind: AlertKind, result: CalibrationResult, text: str) -> PolicyAlert:
    return PolicyAlert(
        kind=kind,
        deployment_name=result.deployment_name,
        device_id=result.device_id,
        check_partition=result.check_partition,
        timestamp=result.timestamp,
        text=text,
    )


# ----------------------------------------------------------------------------- digest


# A device's state as the digest and the fleet view show it, worst first (a device never checked
# is "no checks", after all of them).
FLEET_STATUSES = ("breach", "unconfirmed", "failing", "inconclusive", "ok")


class DeviceSummary(BaseModel):
    """One device as the digest and the fleet view show it."""

    deployment_name: str
    device_id: str
    status: str  # the policy's view: one of FLEET_STATUSES, or "no checks"
    latest_status: str | None  # the newest check's own status
    latest_at: datetime | None
    breach_since: datetime | None = None
    worst_axis: str | None = None
    worst_offset_deg: float | None = None
    worst_sigma_deg: float | None = None
    offsets: dict[str, float | None] = {}
    sigmas: dict[str, float | None] = {}
    failing_since: datetime | None = None
    last_good_at: datetime | None = None
    trend_axis: str | None = None
    trend_deg_per_day: float | None = None
    trend_sigma_deg_per_day: float | None = None
    days_to_threshold: float | None = None
    days_sigma: float | None = None
    forecast_text: str | None = None
    # unconfirmed: the newest conclusive check is beyond the threshold by the breach rule, and
    # fewer agreeing checks than the rule needs say so yet ("1 of 2 checks")
    breach_evidence: str | None = None


def summarize(state: DeviceState, deployment_name: str, device_id: str) -> DeviceSummary:
    last, good = state.last, state.last_good
    if last is None:
        return DeviceSummary(
            deployment_name=deployment_name, device_id=device_id, status="no checks", latest_status=None, latest_at=None
        )
    if state.in_breach:
        status = "breach"
    elif state.failing_since is not None:
        status = "failing"
    elif state.inconclusive_in_a_row >= state.settings.inconclusive_checks:
        status = "inconclusive"
    elif state.breach_votes and state.breach_votes[-1]:
        # not ✅: one check beyond the threshold is no alert yet, but it is not "ok" to look at
        status = "unconfirmed"
    elif good is None:
        status = CheckStatus(last.status).value
    else:
        status = "ok"
    summary = DeviceSummary(
        deployment_name=deployment_name,
        device_id=device_id,
        status=status,
        latest_status=CheckStatus(last.status).value,
        latest_at=last.timestamp,
        breach_since=state.breach_since,
        failing_since=state.failing_since,
        last_good_at=good.timestamp if good else None,
    )
    if status == "unconfirmed":
        seen = _agreeing(state.breach_votes, state.settings.agreement_deg)
        summary.breach_evidence = f"{seen} of {state.settings.breach_checks} checks"
    if good is not None:
        offsets, sigmas = good.offsets(), good.uncertainties()
        known = _known(offsets)
        axis = max(known, key=lambda a: abs(known[a]))
        summary.offsets, summary.sigmas = offsets, sigmas
        summary.worst_axis, summary.worst_offset_deg, summary.worst_sigma_deg = axis, known[axis], sigmas.get(axis)
        forecasts = state.forecast(good.threshold_deg)
        pick = soonest(forecasts) or fastest(forecasts)
        if pick is not None:
            summary.trend_axis = pick.axis
            summary.trend_deg_per_day = pick.trend.slope_deg_per_day
            summary.trend_sigma_deg_per_day = pick.trend.slope_sigma_deg_per_day
            summary.days_to_threshold, summary.days_sigma = pick.days_to_threshold, pick.days_sigma
            summary.forecast_text = describe(pick, good.threshold_deg)
    return summary


def digest_due(now: datetime, last_sent: datetime | None, settings: AlertPolicySettings) -> bool:
    """True once a day, from the digest hour on, when today's digest has not gone out yet."""
    now = _utc(now)
    if now.hour < settings.digest_hour:
        return False
    today = now.replace(hour=settings.digest_hour, minute=0, second=0, microsecond=0)
    return last_sent is None or _utc(last_sent) < today


def format_digest(fleet_name: str, summaries: Sequence[DeviceSummary], now: datetime, top: int = 5) -> str:
    """The daily digest: counts, devices in breach (since when, how far), failing devices, and the
    fastest-drifting devices with their forecast."""
    counts: dict[str, int] = {}
    for s in summaries:
        counts[s.status] = counts.get(s.status, 0) + 1
    order = (*FLEET_STATUSES, "no checks")
    count_text = ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k)) or "no devices"
    lines = [f"📋 *{fleet_name}* daily calibration digest, {_utc(now).strftime('%Y-%m-%d %H:%M UTC')}"]
    lines.append(f"{len(summaries)} device{'' if len(summaries) == 1 else 's'}: {count_text}")
    breached = sorted((s for s in summaries if s.status == "breach"), key=lambda s: -abs(s.worst_offset_deg or 0))
    if breached:
        lines.append("🚨 in breach:")
        for s in breached:
            how_far = format_offset(s.worst_axis or "?", s.worst_offset_deg, s.worst_sigma_deg)
            since = _since(s.breach_since, now) if s.breach_since else "?"
            lines.append(f"  • {s.deployment_name} / {s.device_id}: {how_far}, since {since}")
    unconfirmed = [s for s in summaries if s.status == "unconfirmed"]
    if unconfirmed:
        lines.append("🔸 beyond the threshold, not confirmed yet:")
        for s in unconfirmed:
            how_far = format_offset(s.worst_axis or "?", s.worst_offset_deg, s.worst_sigma_deg)
            lines.append(f"  • {s.deployment_name} / {s.device_id}: {how_far} ({s.breach_evidence})")
    failing = [s for s in summaries if s.status == "failing"]
    if failing:
        lines.append("❌ failing:")
        for s in failing:
            last_good = _since(s.last_good_at, now) if s.last_good_at else "never"
            since = _since(s.failing_since, now) if s.failing_since else "?"
            lines.append(f"  • {s.deployment_name} / {s.device_id}: since {since}, last good check {last_good}")
    inconclusive = [s for s in summaries if s.status == "inconclusive"]
    if inconclusive:
        lines.append("⚠️ inconclusive: " + ", ".join(f"{s.deployment_name} / {s.device_id}" for s in inconclusive))
    drifting = sorted(
        (s for s in summaries if s.trend_deg_per_day is not None and s.status != "breach"),
        key=lambda s: -abs(s.trend_deg_per_day or 0),
    )[:top]
    if drifting:
        lines.append(f"📈 fastest drifting (top {len(drifting)}):")
        for s in drifting:
            lines.append(f"  • {s.deployment_name} / {s.device_id}: {s.forecast_text}")
    return "\n".join(lines)


def forecast_columns(
    result: CalibrationResult, previous_results: Sequence[CalibrationResult], settings: AlertPolicySettings
) -> dict[str, float | str | None]:
    """The results row's forecast columns as of this check (all None without enough history)."""
    state = fold((r for r in previous_results if r.check_partition < result.check_partition), settings)
    state.advance(result)
    summary = summarize(state, result.deployment_name, result.device_id)
    return {
        "trend_axis": summary.trend_axis,
        "trend_deg_per_day": summary.trend_deg_per_day,
        "trend_sigma_deg_per_day": summary.trend_sigma_deg_per_day,
        "days_to_threshold": summary.days_to_threshold,
        "days_to_threshold_sigma": summary.days_sigma,
    }
