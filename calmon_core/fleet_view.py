"""The fleet at a glance: every device's state as a markdown table, and the numbers behind the
fleet heat map (devices × recent days, colour = the day's largest |offset|). Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from calmon_core.alert_policy import FLEET_STATUSES, AlertPolicySettings, DeviceSummary, fold, summarize
from calmon_core.models import CalibrationResult, CheckStatus

STATUS_MARK = {
    "breach": "🚨 breach",
    "unconfirmed": "🔸 unconfirmed",
    "failing": "❌ failing",
    "inconclusive": "⚠️ inconclusive",
    "ok": "✅ ok",
}
_ORDER = {status: rank for rank, status in enumerate(FLEET_STATUSES)}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def fleet_summaries(
    histories: Mapping[str, Sequence[CalibrationResult]], settings: AlertPolicySettings
) -> list[DeviceSummary]:
    """One summary per device from its recent rows (any order), worst first: breach, failing,
    inconclusive, then by days to the threshold, then by |offset|."""
    out = []
    for device_id, rows in histories.items():
        if not rows:
            continue
        out.append(summarize(fold(rows, settings), rows[0].deployment_name, device_id))

    def rank(s: DeviceSummary):
        days = s.days_to_threshold if s.days_to_threshold is not None else math.inf
        return (
            _ORDER.get(s.status, len(_ORDER)),
            days,
            -abs(s.worst_offset_deg or 0.0),
            s.deployment_name,
            s.device_id,
        )

    return sorted(out, key=rank)


def _angle(value: float | None, sigma: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:+.3f} ±{sigma:.3f}" if sigma is not None and math.isfinite(sigma) else f"{value:+.3f}"


def _when(moment: datetime | None) -> str:
    return _utc(moment).strftime("%m-%d %H:%M") if moment is not None else "never"


# The overview's columns, (name, what it says): few and short, so the table reads at a glance in
# the Dagster UI's metadata column; markdown_table has every number. Times are relative to the
# refresh (the entry's timestamp), as an engineer asks them: how long in breach, how long ago.
OVERVIEW_COLUMNS = (
    ("device", "the device's id (its deployment: fleet_details)"),
    ("status", "the alert policy's state of the device"),
    ("worst", "the latest conclusive check's largest offset (σ of all three angles: fleet_details)"),
    ("trend", "the drift of the axis heading for the threshold soonest (else the fastest), °/day"),
    (
        "threshold",
        "how long the device has been in breach, how many checks beyond it are in (unconfirmed), or "
        "when its trend reaches it",
    ),
    ("last good", "how long ago the newest conclusive check ran"),
)


def _span(days: float) -> str:
    if days < 1 / 24:
        return f"{max(days * 1440, 0):.0f} min"
    return f"{days * 24:.0f} h" if days < 2 else f"{days:.1f} d"


def overview_rows(summaries: Sequence[DeviceSummary], now: datetime) -> list[dict[str, str]]:
    """The fleet at a glance, one short row per device, worst first (OVERVIEW_COLUMNS)."""
    now = _utc(now)

    def ago(moment: datetime | None) -> str:
        return "never" if moment is None else f"{_span((now - _utc(moment)).total_seconds() / 86400)} ago"

    rows = []
    for s in summaries:
        worst = (
            f"{s.worst_axis} {s.worst_offset_deg:+.3f}°"
            if s.worst_axis is not None and s.worst_offset_deg is not None
            else "–"
        )
        trend = f"{s.trend_deg_per_day:+.3f}°/d" if s.trend_deg_per_day is not None else "–"
        if s.status == "breach" and s.breach_since is not None:
            threshold = f"for {_span((now - _utc(s.breach_since)).total_seconds() / 86400)}"
        elif s.breach_evidence is not None:
            threshold = s.breach_evidence
        elif s.days_to_threshold is not None:
            threshold = f"in ~{_span(s.days_to_threshold)}"
        else:
            threshold = "–"
        cells = (s.device_id, STATUS_MARK.get(s.status, s.status), worst, trend, threshold, ago(s.last_good_at))
        rows.append(dict(zip((name for name, _ in OVERVIEW_COLUMNS), cells, strict=True)))
    return rows


def markdown_table(summaries: Sequence[DeviceSummary]) -> str:
    """Every number of every device, one line per device: the fleet view's details."""
    header = (
        "| device | deployment | status | yaw ° | pitch ° | roll ° | trend °/day | days to threshold "
        "| last good check | latest check |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for s in summaries:
        trend = (
            f"{s.trend_axis} {s.trend_deg_per_day:+.3f} ±{s.trend_sigma_deg_per_day:.3f}"
            if s.trend_deg_per_day is not None and s.trend_sigma_deg_per_day is not None
            else "–"
        )
        if s.status == "breach":
            days = f"in breach since {_when(s.breach_since)}"
        elif s.breach_evidence is not None:
            days = s.breach_evidence
        elif s.days_to_threshold is not None:
            days = f"{s.days_to_threshold:.1f} ±{s.days_sigma or 0:.1f}"
        else:
            days = "–"
        cells = [
            s.device_id,
            s.deployment_name,
            STATUS_MARK.get(s.status, s.status),
            *(_angle(s.offsets.get(a), s.sigmas.get(a)) for a in ("yaw", "pitch", "roll")),
            trend,
            days,
            _when(s.last_good_at),
            f"{_when(s.latest_at)} ({s.latest_status})" if s.latest_status else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def daily_max_offsets(
    histories: Mapping[str, Sequence[CalibrationResult]], now: datetime, days: int = 14
) -> tuple[list[str], list[datetime], np.ndarray, np.ndarray]:
    """(devices, day starts, the largest |offset| per device and day, and whether a day held a
    failed check) for the heat map, oldest day first. NaN: no conclusive check that day.

    "Largest" is the largest that two of the day's checks reach (one check alone, on a day with
    more than one, is the day's value only if it is the only one): like the alert policy, a single
    wrong match does not paint a healthy camera red."""
    today = _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [today - timedelta(days=days - 1 - i) for i in range(days)]
    devices = sorted(histories)
    worst: dict[tuple[int, int], list[float]] = {}
    failed = np.zeros((len(devices), days), dtype=bool)
    for row_index, device_id in enumerate(devices):
        for result in histories[device_id]:
            index = (_utc(result.timestamp) - starts[0]).days
            if not 0 <= index < days:
                continue
            if CheckStatus(result.status) is CheckStatus.failed:
                failed[row_index, index] = True
            known = [abs(v) for v in result.offsets().values() if v is not None and math.isfinite(v)]
            if known and CheckStatus(result.status) in (CheckStatus.ok, CheckStatus.breach):
                worst.setdefault((row_index, index), []).append(max(known))
    values = np.full((len(devices), days), np.nan)
    for (row_index, index), seen in worst.items():
        seen.sort()
        values[row_index, index] = seen[-2] if len(seen) >= 2 else seen[-1]
    return devices, starts, values, failed
