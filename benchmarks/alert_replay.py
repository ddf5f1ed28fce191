"""PolicyAlert replay: synthetic check histories of a fleet through the alert policy, side by side with the
"every check" policy calmon had before; and the drift forecast's methods on known ramps.

    .venv/bin/python benchmarks/alert_replay.py                      # 200 devices x 30 days hourly
    .venv/bin/python benchmarks/alert_replay.py --devices 50 --days 10   # quick
    .venv/bin/python benchmarks/alert_replay.py --sweep              # the k, N/M, margin search
    .venv/bin/python benchmarks/alert_replay.py --forecast-only      # the forecast tables alone (~25 s)

The fleet (every number is drawn per device from a seeded generator):
  healthy        constant offsets within ±0.25°, 1% outlier checks (a wrong match: 0.6–1.5° off
                 with a small σ), 0.5% failed checks (network blip)
  outliers       the same with 5% outlier checks
  step           a step of 0.8° on yaw at a random day; half are repaired 1–4 days later
  ramp           flat, then 0.1°/day until repaired 3 days after crossing
  drift          flat for 3–10 days, then a ramp of 0.05–0.5°/day (log-uniform), repaired 2 days
                 after crossing
  at_threshold   yaw sits at exactly 0.5°, noise 0.03–0.05° (reported σ 0.8–1.2x the truth)
  near           yaw at 0.42–0.46°, noise 0.02–0.03°: any 🚨 is false
  failing        offline (every check failed) from a random day; 2 of 5 come back
  flapping_net   30% of checks fail at random all month
Night: 60% of devices are passive cameras whose checks are inconclusive 19:00–06:00 UTC; one device
per deployment has a 10-hour daytime fog episode (inconclusive: a legitimate ⚠️). One deployment has
a 4-hour maintenance window on day 15 during which its checks fail or read nonsense.

Measured truth: a breach episode starts when the true |offset| first exceeds the threshold; its
detection delay is the number of the conclusive check (1 = the first one after crossing) that
carried the 🚨. A false 🚨 is one sent while the true |offset| is at least 0.02° inside the
threshold. A flapping pair is a 🚨 followed by a ✅ of the same device within 3 checks.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calmon_core.alert_policy import (  # noqa: E402
    AlertKind,
    AlertPolicySettings,
    DeviceState,
    MaintenanceWindow,
    alert_for_check,
    digest_due,
    format_digest,
    is_conclusive,
    summarize,
)
from calmon_core.check import classify  # noqa: E402
from calmon_core.forecast import (  # noqa: E402
    AXES,
    ForecastMethod,
    KalmanSettings,
    KalmanState,
    bent_line_trend,
    days_to_threshold,
    kalman_trend,
    kalman_update,
    theil_sen_trend,
)
from calmon_core.models import CalibrationResult, CheckStatus  # noqa: E402

START = datetime(2026, 11, 1, tzinfo=UTC)
THRESHOLD = 0.5
DARK_HOURS = (19, 6)  # the sim's dark hours: inside the policy's default night_hours 18-7
MAINTENANCE_DEPLOYMENT = "site-07"
MAINTENANCE = (START + timedelta(days=15, hours=8), START + timedelta(days=15, hours=12))
FORECAST_RATES = (0.05, 0.1, 0.2, 0.3, 0.5)  # °/day


@dataclass
class Device:
    device_id: str
    deployment: str
    kind: str
    base: np.ndarray  # yaw, pitch, roll offsets
    noise: float
    sigma_scale: float  # reported σ / true noise
    p_outlier: float = 0.01
    p_fail: float = 0.005
    dark_nights: bool = False
    fog: tuple[float, float] | None = None  # days
    step_at: float | None = None
    step_size: float = 0.0
    repaired_at: float | None = None
    ramp_from: float | None = None
    rate: float = 0.0
    offline: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)

    def true_yaw(self, t: float) -> float:
        if self.repaired_at is not None and t >= self.repaired_at:
            return float(self.base[0])
        value = float(self.base[0])
        if self.step_at is not None and t >= self.step_at:
            value += self.step_size
        if self.ramp_from is not None and t >= self.ramp_from:
            value += self.rate * (t - self.ramp_from)
        return value


def build_fleet(devices: int, days: float, rng: np.random.Generator) -> list[Device]:
    mix = {
        "step": 12,
        "ramp": 10,
        "drift": 20,
        "at_threshold": 10,
        "near": 10,
        "outliers": 10,
        "failing": 5,
        "flapping_net": 8,
    }
    scale = devices / 200
    kinds: list[str] = []
    for kind, n in mix.items():
        kinds += [kind] * max(1, round(n * scale))
    kinds += ["healthy"] * max(0, devices - len(kinds))
    kinds = kinds[:devices]
    rng.shuffle(kinds)
    fleet = []
    deployments = max(1, devices // 20)
    for i, kind in enumerate(kinds):
        base = np.array([rng.uniform(-0.25, 0.25), rng.uniform(-0.15, 0.15), rng.uniform(-0.1, 0.1)])
        d = Device(
            device_id=f"cam-{i:03d}",
            deployment=f"site-{i % deployments:02d}",
            kind=kind,
            base=base,
            noise=rng.uniform(0.01, 0.03),
            sigma_scale=rng.uniform(0.8, 1.2),
            dark_nights=rng.random() < 0.6,
        )
        if kind == "outliers":
            d.p_outlier = 0.05
        elif kind == "step":
            d.step_at = rng.uniform(2, max(2.5, days - 5))
            d.step_size = 0.8 * (1 if base[0] >= 0 else -1)
            if i % 2 == 0:
                d.repaired_at = d.step_at + rng.uniform(1, 4)
        elif kind == "ramp":
            d.ramp_from, d.rate = rng.uniform(1, 5), 0.1 * (1 if base[0] >= 0 else -1)
            d.repaired_at = d.ramp_from + (THRESHOLD - abs(base[0])) / 0.1 + 3
        elif kind == "drift":
            rate = math.exp(rng.uniform(math.log(0.05), math.log(0.5)))
            d.ramp_from, d.rate = rng.uniform(3, 10), rate * (1 if base[0] >= 0 else -1)
            d.repaired_at = d.ramp_from + (THRESHOLD - abs(base[0])) / rate + 2
        elif kind == "at_threshold":
            d.base[0] = THRESHOLD * (1 if rng.random() < 0.5 else -1)
            d.noise = rng.uniform(0.03, 0.05)
        elif kind == "near":
            d.base[0] = rng.uniform(0.42, 0.46) * (1 if rng.random() < 0.5 else -1)
            d.noise = rng.uniform(0.02, 0.03)
        elif kind == "failing":
            start = rng.uniform(5, max(5.5, days - 5))
            d.offline = (start, start + 2 if i % 5 < 2 else days + 1)
        elif kind == "flapping_net":
            d.p_fail = 0.3
        fleet.append(d)
    for dep in sorted({d.deployment for d in fleet}):
        members = [d for d in fleet if d.deployment == dep and d.kind == "healthy"]
        if members:
            fog_day = rng.uniform(1, max(1.5, days - 2))
            members[0].fog = (math.floor(fog_day) + 7 / 24, math.floor(fog_day) + 17 / 24)
    return fleet


def check_of(d: Device, hour: int, rng: np.random.Generator) -> CalibrationResult:
    moment = START + timedelta(hours=hour, minutes=5)
    t = (moment - START).total_seconds() / 86400  # the truth at capture time, as episodes() reads it
    partition = (START + timedelta(hours=hour)).strftime("%Y-%m-%d-%H:00")
    common = dict(
        deployment_name=d.deployment,
        device_id=d.device_id,
        timestamp=moment,
        check_partition=partition,
        threshold_deg=THRESHOLD,
        files_location=f"s3://bucket/{d.deployment}/{d.device_id}/query_scan/{moment:%Y%m%dT%H%M%SZ}",
    )
    in_maintenance = d.deployment == MAINTENANCE_DEPLOYMENT and MAINTENANCE[0] <= moment < MAINTENANCE[1]
    offline = d.offline is not None and d.offline[0] <= t < d.offline[1]
    if offline or rng.random() < d.p_fail or (in_maintenance and hour % 2 == 0):
        return CalibrationResult(**common, success=False, status=CheckStatus.failed, failure_log="camera offline")
    dark = d.dark_nights and (moment.hour >= DARK_HOURS[0] or moment.hour < DARK_HOURS[1])
    foggy = d.fog is not None and d.fog[0] <= t < d.fog[1]
    if dark or foggy or rng.random() < 0.01:
        return CalibrationResult(
            **common, success=False, status=CheckStatus.inconclusive, failure_log="too few features"
        )
    truth = d.base.copy()
    truth[0] = d.true_yaw(t)
    measured = truth + rng.normal(0, d.noise, 3)
    sigma = np.full(3, d.noise * d.sigma_scale)
    if in_maintenance:  # the camera is pointed elsewhere while worked on
        measured[0] += 1.5
    elif rng.random() < d.p_outlier:
        measured[rng.integers(0, 3)] += rng.choice([-1, 1]) * rng.uniform(0.6, 1.5)
    offsets = dict(zip(AXES, (round(float(v), 4) for v in measured), strict=True))
    sigmas = dict(zip(AXES, (round(float(v), 4) for v in sigma), strict=True))
    return CalibrationResult(
        **common,
        yaw_offset=offsets["yaw"],
        pitch_offset=offsets["pitch"],
        roll_offset=offsets["roll"],
        yaw_uncertainty=sigmas["yaw"],
        pitch_uncertainty=sigmas["pitch"],
        roll_uncertainty=sigmas["roll"],
        success=True,
        status=classify(True, offsets, THRESHOLD, capture_failed=False),
    )


def histories(fleet: list[Device], days: float, seed: int) -> dict[str, list[CalibrationResult]]:
    rng = np.random.default_rng(seed + 1)
    hours = int(days * 24)
    return {d.device_id: [check_of(d, h, rng) for h in range(hours)] for d in fleet}


# ----------------------------------------------------------------------------- replay


@dataclass
class Sent:
    kind: AlertKind | str
    device_id: str
    index: int  # check number in the device's history
    moment: datetime


def replay_state_change(
    fleet: list[Device], checks: dict[str, list[CalibrationResult]], settings: AlertPolicySettings, days: float
) -> list[Sent]:
    """Every device's checks in time order through DeviceState.advance (the fold alert_for_check
    runs), the digest at its hour."""
    sent: list[Sent] = []
    states = {d.device_id: DeviceState(settings) for d in fleet}
    hours = int(days * 24)
    last_digest = None
    for hour in range(hours):
        for d in fleet:
            result = checks[d.device_id][hour]
            kind = states[d.device_id].advance(result)
            if kind is not None:
                sent.append(Sent(kind, d.device_id, hour, result.timestamp))
        now = START + timedelta(hours=hour, minutes=30)
        if digest_due(now, last_digest, settings):
            summaries = [summarize(states[d.device_id], d.deployment, d.device_id) for d in fleet]
            format_digest("fleet", summaries, now)
            last_digest = now
            sent.append(Sent("digest", "*", hour, now))
    return sent


def replay_every_check(fleet: list[Device], checks: dict[str, list[CalibrationResult]]) -> list[Sent]:
    """Today's behaviour: one message per check; ✅ after a breach is the recovery."""
    sent = []
    for d in fleet:
        last_decided = None
        for i, result in enumerate(checks[d.device_id]):
            status = CheckStatus(result.status)
            if status is CheckStatus.breach:
                kind: AlertKind | str = AlertKind.breach
            elif status is CheckStatus.ok and last_decided is CheckStatus.breach:
                kind = AlertKind.recovered
            else:
                kind = f"check:{status.value}"
            if is_conclusive(result):
                last_decided = status
            sent.append(Sent(kind, d.device_id, i, result.timestamp))
    return sent


def episodes(d: Device, checks: list[CalibrationResult]) -> list[tuple[int, int]]:
    """(first check index after crossing, last index) of each true breach episode."""
    out, start = [], None
    for i, r in enumerate(checks):
        t = (r.timestamp - START).total_seconds() / 86400
        above = abs(d.true_yaw(t)) > THRESHOLD
        if above and start is None:
            start = i
        if not above and start is not None:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, len(checks) - 1))
    return out


def evaluate(fleet, checks, sent, days) -> dict:
    by_device: dict[str, list[Sent]] = {}
    for s in sent:
        by_device.setdefault(s.device_id, []).append(s)
    delays: dict[str, list[int]] = {"step": [], "ramp": [], "drift": []}
    delay_hours: dict[str, list[float]] = {"step": [], "ramp": [], "drift": []}
    missed = 0
    false_breach = 0
    at_threshold_breach = 0
    flapping = 0
    flapping_at_threshold = 0
    warnings_per_episode: list[int] = []
    lead_hours: list[float] = []
    false_warnings = 0
    for d in fleet:
        mine = sorted(by_device.get(d.device_id, []), key=lambda s: s.index)
        history = checks[d.device_id]
        breaches = [s for s in mine if s.kind == AlertKind.breach]
        recoveries = [s for s in mine if s.kind == AlertKind.recovered]
        for b in breaches:
            t = (b.moment - START).total_seconds() / 86400
            truth = abs(d.true_yaw(t))
            if d.kind == "at_threshold":
                at_threshold_breach += 1
            elif truth <= THRESHOLD - 0.02:
                false_breach += 1
            nxt = [r for r in recoveries if b.index < r.index <= b.index + 3]
            if nxt:
                flapping += 1
                flapping_at_threshold += d.kind == "at_threshold"
        warnings = [s for s in mine if s.kind == AlertKind.early_warning]
        if d.kind in ("healthy", "outliers", "near", "at_threshold", "failing", "flapping_net"):
            false_warnings += len(warnings) if d.kind != "at_threshold" else 0
        if d.kind not in delays:
            continue
        previous_end = -1
        for first, last in episodes(d, history):
            alerts = [b for b in breaches if previous_end < b.index <= last]
            after = [b for b in alerts if b.index >= first]
            if not alerts:
                missed += 1
            else:
                alert = min(alerts, key=lambda b: b.index)
                conclusive = [i for i in range(first, alert.index + 1) if is_conclusive(history[i])]
                delays[d.kind].append(len(conclusive) if alert.index >= first else 0)
                delay_hours[d.kind].append(max(0, alert.index - first))
                del after
            if d.kind == "drift":
                w = [s for s in warnings if previous_end < s.index <= last]
                warnings_per_episode.append(len(w))
                if w and alerts:
                    lead_hours.append(min(alerts, key=lambda b: b.index).index - w[0].index)
            previous_end = last
    kinds: dict[str, int] = {}
    for s in sent:
        key = s.kind.value if isinstance(s.kind, AlertKind) else s.kind
        kinds[key] = kinds.get(key, 0) + 1
    return {
        "messages": len(sent),
        "per_day": len(sent) / days,
        "kinds": kinds,
        "delays": delays,
        "delay_hours": delay_hours,
        "missed": missed,
        "false_breach": false_breach,
        "at_threshold_breach": at_threshold_breach,
        "flapping": flapping,
        "flapping_at_threshold": flapping_at_threshold,
        "warnings_per_episode": warnings_per_episode,
        "lead_hours": lead_hours,
        "false_warnings": false_warnings,
    }


def _fmt_delays(values: list[int]) -> str:
    if not values:
        return "-"
    return f"max {max(values)}, median {statistics.median(values):g} (n={len(values)})"


def _fmt_hours(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):.0f} h, max {max(values):.0f} h"


def print_side_by_side(rows: dict[str, dict], days: float, devices: int) -> None:
    names = list(rows)
    width = 40
    print(f"\n## PolicyAlert replay: {devices} devices x {days:g} days, hourly checks\n")
    print("| metric | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))

    def line(label, fn):
        print(f"| {label} | " + " | ".join(fn(rows[n])[:width] for n in names) + " |")

    line("messages per day (incl. digest)", lambda r: f"{r['per_day']:.1f}")
    line("messages total", lambda r: str(r["messages"]))
    for kind in ("breach", "recovered", "failing", "inconclusive", "early_warning", "digest"):
        line(f"  {kind}", lambda r, k=kind: str(r["kinds"].get(k, 0)))
    line("  other per-check messages", lambda r: str(sum(v for k, v in r["kinds"].items() if k.startswith("check:"))))
    line("step breach: alerted on check # after crossing", lambda r: _fmt_delays(r["delays"]["step"]))
    line("ramp 0.1°/day: hours crossing→🚨", lambda r: _fmt_hours(r["delay_hours"]["ramp"]))
    line("drift 0.05–0.5°/day: hours crossing→🚨", lambda r: _fmt_hours(r["delay_hours"]["drift"]))
    line("real breaches never alerted", lambda r: str(r["missed"]))
    line("false 🚨 (truth ≥0.02° inside)", lambda r: str(r["false_breach"]))
    line("🚨 on cameras sitting at 0.5°", lambda r: str(r["at_threshold_breach"]))
    line("flapping pairs (🚨 then ✅ ≤3 checks)", lambda r: str(r["flapping"]))
    line("  of which cameras at 0.5°", lambda r: str(r["flapping_at_threshold"]))
    line(
        "⏳ per drift episode (0/1/>1)",
        lambda r: (
            "-"
            if not r["warnings_per_episode"]
            else "/".join(
                str(x)
                for x in (
                    sum(1 for w in r["warnings_per_episode"] if w == 0),
                    sum(1 for w in r["warnings_per_episode"] if w == 1),
                    sum(1 for w in r["warnings_per_episode"] if w > 1),
                )
            )
        ),
    )
    line("⏳ lead time before 🚨", lambda r: _fmt_hours(r["lead_hours"]))
    line("⏳ on devices not drifting", lambda r: str(r["false_warnings"]))


# ----------------------------------------------------------------------------- forecast accuracy


@dataclass
class Ramp:
    """One simulated camera's checks for the forecast tables: flat for `flat_days`, then a linear
    ramp from the day-0 offset that crosses +0.5° `crossing` days after it starts."""

    rate: float
    crossing: float  # days from the ramp's start to the crossing
    noise: float  # the true per-check σ (also what the checks report)
    times: list[float]  # days since the ramp started (negative on the flat days)
    values: list[float]
    outlier: list[bool]  # the check is a wrong match (known to the simulation only)

    def scored(self) -> list[int]:
        """The checks a forecast is scored at: ≥3 days of the ramp's history, ≥12 h left."""
        return [i for i, t in enumerate(self.times) if t >= 3 and self.crossing - t >= 0.5]


def ramps(rates, per_rate, seed, flat_days: float = 0.0) -> list[Ramp]:
    """Linear ramps crossing +0.5° 4–8 days after they start, after `flat_days` of a camera that
    does not move (at the ramp's starting offset); hourly checks, 60% with dark nights, 1%
    outliers of 0.6–1.5°."""
    rng = np.random.default_rng(seed + 7)
    out = []
    for rate in rates:
        for _ in range(per_rate):
            crossing = rng.uniform(4, 8)
            start = THRESHOLD - rate * crossing
            noise = rng.uniform(0.01, 0.03)
            dark = rng.random() < 0.6
            ramp = Ramp(rate, crossing, noise, [], [], [])
            for hour in range(int((flat_days + crossing) * 24)):
                if dark and (hour % 24 >= DARK_HOURS[0] or hour % 24 < DARK_HOURS[1]):
                    continue
                t = hour / 24 - flat_days
                v = start + rate * max(t, 0.0) + rng.normal(0, noise)
                wrong = bool(rng.random() < 0.01)
                if wrong:
                    v += rng.choice([-1, 1]) * rng.uniform(0.6, 1.5)
                ramp.times.append(t)
                ramp.values.append(v)
                ramp.outlier.append(wrong)
            out.append(ramp)
    return out


def forecast_accuracy(rates, per_rate, seed, methods, flat_days: float = 0.0) -> dict[str, dict[float, list[float]]]:
    """At every scored check of `ramps`: |predicted − true crossing time| / (true crossing − now)."""
    errors: dict[str, dict[float, list[float]]] = {name: {r: [] for r in rates} for name in methods}
    for ramp in ramps(rates, per_rate, seed, flat_days):
        times, values, sigmas = ramp.times, ramp.values, [ramp.noise] * len(ramp.times)
        filters = {name: KalmanState() for name, (kind, _) in methods.items() if kind == "kalman"}
        scored = set(ramp.scored())
        for i, (t, v) in enumerate(zip(times, values, strict=True)):
            for name, state in filters.items():
                kalman_update(state, t, v, ramp.noise, methods[name][1])
            if i not in scored:
                continue
            for name, (kind, param) in methods.items():
                lo = max(0, i + 1 - param) if isinstance(param, int) else 0
                if kind == "kalman":
                    trend = kalman_trend(filters[name])
                elif kind == "bent_line":
                    trend = bent_line_trend(times[lo : i + 1], values[lo : i + 1], sigmas[lo : i + 1])
                else:
                    trend = theil_sen_trend(times[lo : i + 1], values[lo : i + 1])
                days, _ = days_to_threshold(trend, THRESHOLD) if trend else (None, None)
                remaining = ramp.crossing - t
                errors[name][ramp.rate].append(1.0 if days is None else abs(days - remaining) / remaining)
    return errors


@dataclass
class BoundCheck:
    """One scored check: what the data allow (the oracle) beside what the bent line made of them."""

    rate: float
    remaining: float  # true days to the crossing
    oracle_sigma: float  # the oracle's 1-σ crossing-time error, days
    oracle_error: float  # |oracle's predicted − true remaining| / remaining
    error: float  # the same for the bent line (1 when it forecasts no crossing)
    signed: float  # bent line predicted − true remaining, days (nan when no forecast)
    reported_sigma: float  # the ± the bent line reports, days (nan when no forecast)


def _oracle(t: np.ndarray, y: np.ndarray, noise: float, rate: float, crossing: float) -> tuple[float, float]:
    """The least-squares line through the ramp's checks since it started, wrong matches left out,
    with the true σ: (1-σ error of its crossing time, the crossing time it predicts), in days.

    For a straight line with Gaussian noise of known σ least squares is efficient, so its σ is the
    Cramér–Rao bound on any unbiased crossing-time estimate that uses only these checks. The
    crossing time is where the line reaches 0.5°, so its error is the error of the line's value
    extrapolated to the crossing, divided by the slope: σ·√(1/n + (t_cross − t̄)²/Sxx) / rate."""
    n = len(t)
    mean = float(t.mean())
    sxx = float(((t - mean) ** 2).sum())
    sigma = noise * math.sqrt(1 / n + (crossing - mean) ** 2 / sxx) / rate
    slope = float(((t - mean) * (y - y.mean())).sum()) / sxx
    predicted = mean + (THRESHOLD - float(y.mean())) / slope if slope > 0 else math.inf
    return sigma, predicted


def forecast_bound(
    rates, per_rate, seed, flat_days: float = 0.0, window: int = AlertPolicySettings().forecast_window_checks
) -> list[BoundCheck]:
    """At every scored check of `ramps`: the oracle (it knows where the ramp started, which checks
    are wrong matches and the true σ) and the bent line over the newest `window` checks."""
    out = []
    for ramp in ramps(rates, per_rate, seed, flat_days):
        times, values = np.asarray(ramp.times), np.asarray(ramp.values)
        sigmas = [ramp.noise] * len(times)
        clean = ~np.asarray(ramp.outlier)
        for i in ramp.scored():
            remaining = ramp.crossing - float(times[i])
            since = clean[: i + 1] & (times[: i + 1] >= 0)
            oracle_sigma, oracle_crossing = _oracle(
                times[: i + 1][since], values[: i + 1][since], ramp.noise, ramp.rate, ramp.crossing
            )
            lo = max(0, i + 1 - window)
            trend = bent_line_trend(times[lo : i + 1], values[lo : i + 1], sigmas[lo : i + 1])
            days, sigma = days_to_threshold(trend, THRESHOLD) if trend else (None, None)
            out.append(
                BoundCheck(
                    rate=ramp.rate,
                    remaining=remaining,
                    oracle_sigma=oracle_sigma,
                    oracle_error=min(abs(oracle_crossing - ramp.crossing) / remaining, 1.0),
                    error=1.0 if days is None else abs(days - remaining) / remaining,
                    signed=math.nan if days is None else days - remaining,
                    reported_sigma=math.nan if sigma is None else sigma,
                )
            )
    return out


def print_forecast_bound(checks: list[BoundCheck], rates, title: str) -> None:
    """Whether the bent line's misses are the data's (the oracle misses too) or the method's."""

    def share(flags) -> str:
        flags = list(flags)
        return f"{np.mean(flags):.0%}" if flags else "-"

    def row(label, fn, subsets) -> None:
        print(f"| {label} | " + " | ".join(fn(c) for c in subsets) + " |")

    groups = [[c for c in checks if c.rate == r] for r in rates] + [checks]
    print(f"\n## Forecast bound on {title}: what the checks allow at ±20% of the time left\n")
    print(
        "oracle: least squares on the ramp's checks since it started (where it starts known, wrong\n"
        "matches left out, true σ), the Cramér–Rao bound for an unbiased crossing time from them;\n"
        "forecastable: the oracle's 1-σ error ≤ 20% of the time left\n"
    )
    print("| | " + " | ".join(f"{r:g}°/day" for r in rates) + " | all |")
    print("|---|" + "---|" * (len(rates) + 1))
    row("checks scored", lambda g: str(len(g)), groups)
    row("forecastable (oracle 1σ ≤ 20%)", lambda g: share(c.oracle_sigma <= 0.2 * c.remaining for c in g), groups)
    row(
        "oracle hit-rate expected, P(|N(0,1σ)| ≤ 20%)",
        lambda g: share(math.erf(0.2 * c.remaining / (c.oracle_sigma * math.sqrt(2))) for c in g),
        groups,
    )
    row("oracle hit-rate measured", lambda g: share(c.oracle_error <= 0.2 for c in g), groups)
    row("bent line hit-rate", lambda g: share(c.error <= 0.2 for c in g), groups)
    row(
        "bent line hit-rate on forecastable checks",
        lambda g: share(c.error <= 0.2 for c in g if c.oracle_sigma <= 0.2 * c.remaining),
        groups,
    )
    row(
        "bent line RMS error / oracle 1σ",
        lambda g: (
            f"{math.sqrt(np.mean([(c.signed / c.oracle_sigma) ** 2 for c in g if math.isfinite(c.signed)])):.2f}"
            if any(math.isfinite(c.signed) for c in g)
            else "-"
        ),
        groups,
    )
    row(
        "bent line |error| ≤ 2× its reported ±",
        lambda g: share(math.isfinite(c.signed) and abs(c.signed) <= 2 * c.reported_sigma for c in g),
        groups,
    )
    print("\nby time left to the crossing: forecastable / oracle hit-rate / bent line hit-rate\n")
    print("| time left | " + " | ".join(f"{r:g}°/day" for r in rates) + " | all |")
    print("|---|" + "---|" * (len(rates) + 1))
    for label, lo, hi in (("≥ 3 d", 3.0, math.inf), ("1–3 d", 1.0, 3.0), ("0.5–1 d", 0.5, 1.0)):
        cells = []
        for g in groups:
            sub = [c for c in g if lo <= c.remaining < hi]
            cells.append(
                "-"
                if not sub
                else f"{share(c.oracle_sigma <= 0.2 * c.remaining for c in sub)} / "
                f"{share(c.oracle_error <= 0.2 for c in sub)} / {share(c.error <= 0.2 for c in sub)} (n={len(sub)})"
            )
        print(f"| {label} | " + " | ".join(cells) + " |")


def print_forecast(errors, rates, title: str) -> None:
    print(f"\n## Forecast: crossing-time error on {title}, once 3 days of the ramp's history exist\n")
    print("share of checks within ±20% (median |error|)\n")
    print("| method | " + " | ".join(f"{r:g}°/day" for r in rates) + " | all |")
    print("|---|" + "---|" * (len(rates) + 1))
    for name, by_rate in errors.items():
        cells = []
        everything = []
        for r in rates:
            e = by_rate[r]
            everything += e
            cells.append(f"{np.mean(np.array(e) <= 0.2):.0%} ({np.median(e):.0%})" if e else "-")
        cells.append(f"{np.mean(np.array(everything) <= 0.2):.0%} ({np.median(everything):.0%})")
        print(f"| {name} | " + " | ".join(cells) + " |")


def print_forecast_tables(args) -> None:
    rates = FORECAST_RATES
    methods = {
        "Theil–Sen, last 48 checks": ("theil_sen", 48),
        "Theil–Sen, last 72 checks": ("theil_sen", 72),
        "Theil–Sen, last 120 checks": ("theil_sen", 120),
        "bent line, σ-weighted, ≤336 checks (default)": ("bent_line", 336),
        "Kalman, slope walk 0.005": ("kalman", KalmanSettings(slope_walk=0.005)),
        "Kalman, slope walk 0.01": ("kalman", KalmanSettings(slope_walk=0.01)),
        "Kalman, slope walk 0.02": ("kalman", KalmanSettings(slope_walk=0.02)),
        "Kalman, slope walk 0.1": ("kalman", KalmanSettings(slope_walk=0.1)),
    }
    print_forecast(forecast_accuracy(rates, args.forecast_per_rate, args.seed, methods), rates, "ramps")
    print_forecast(
        forecast_accuracy(rates, args.forecast_per_rate, args.seed, methods, flat_days=5),
        rates,
        "ramps after 5 flat days",
    )
    for flat_days, title in ((0.0, "ramps"), (5.0, "ramps after 5 flat days")):
        print_forecast_bound(forecast_bound(rates, args.forecast_per_rate, args.seed, flat_days), rates, title)


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--sweep", action="store_true", help="search k, N/M and margin")
    parser.add_argument("--no-forecast", action="store_true", help="skip the forecast method table")
    parser.add_argument("--forecast-per-rate", type=int, default=12)
    parser.add_argument("--forecast-only", action="store_true", help="only the forecast tables (no fleet replay)")
    args = parser.parse_args()
    if args.forecast_only:
        started = time.monotonic()
        print_forecast_tables(args)
        print(f"\n({time.monotonic() - started:.0f} s)")
        return

    started = time.monotonic()
    rng = np.random.default_rng(args.seed)
    fleet = build_fleet(args.devices, args.days, rng)
    checks = histories(fleet, args.days, args.seed)
    maintenance = [MaintenanceWindow(start=MAINTENANCE[0], end=MAINTENANCE[1], deployment_name=MAINTENANCE_DEPLOYMENT)]
    rows: dict[str, dict] = {}
    rows["every_check (before)"] = evaluate(fleet, checks, replay_every_check(fleet, checks), args.days)
    if args.sweep:
        grid = [(0.0, 1, 1, 0.0)] + [
            (k, n, m, margin) for k in (0.0, 1.0, 2.0) for n, m in ((2, 2), (2, 3), (3, 4)) for margin in (0.05, 0.1)
        ]
        for k, n, m, margin in grid:
            s = AlertPolicySettings(
                k_sigma=k,
                breach_checks=n,
                breach_window=m,
                recovery_margin_deg=margin,
                maintenance=maintenance,
                forecast_method=ForecastMethod.kalman,  # the cheap one: breach numbers do not depend on it
            )
            r = evaluate(fleet, checks, replay_state_change(fleet, checks, s, args.days), args.days)
            step = r["delays"]["step"]
            print(
                f"k={k:g} N/M={n}/{m} margin={margin:g}: {r['per_day']:.1f}/day, step delay max "
                f"{max(step) if step else '-'}, missed {r['missed']}, false 🚨 {r['false_breach']}, "
                f"at-0.5 🚨 {r['at_threshold_breach']}, flapping {r['flapping']}, "
                f"ramp {_fmt_hours(r['delay_hours']['ramp'])}",
                flush=True,
            )
    default = AlertPolicySettings(maintenance=maintenance)
    rows["state_change (default)"] = evaluate(
        fleet, checks, replay_state_change(fleet, checks, default, args.days), args.days
    )
    for label, method, window in (
        ("Kalman forecast", ForecastMethod.kalman, default.forecast_window_checks),
        ("Theil–Sen over 72", ForecastMethod.theil_sen, 72),
    ):
        other = default.model_copy(update={"forecast_method": method, "forecast_window_checks": window})
        rows[f"state_change, {label}"] = evaluate(
            fleet, checks, replay_state_change(fleet, checks, other, args.days), args.days
        )
    print_side_by_side(rows, args.days, args.devices)
    print(
        f"\ndefaults: k={default.k_sigma:g}, N/M={default.breach_checks}/{default.breach_window}, "
        f"margin={default.recovery_margin_deg:g}°, failed_checks={default.failed_checks}, "
        f"inconclusive_checks={default.inconclusive_checks}, night_hours={default.night_hours}, "
        f"early_warning_days={default.early_warning_days:g}, forecast={default.forecast_method.value} "
        f"over {default.forecast_window_checks} checks"
    )
    # alert_for_check (the stateless seam) must agree with the fold on a sample device's month
    sample = next(d for d in fleet if d.kind in ("step", "drift"))
    seam = [
        a.kind
        for i, r in enumerate(checks[sample.device_id])
        if (a := alert_for_check(r, checks[sample.device_id][max(0, i - 200) : i], default)) is not None
    ]
    state = DeviceState(default)
    folded = [k for r in checks[sample.device_id] if (k := state.advance(r)) is not None]
    print(f"alert_for_check on {sample.device_id} ({sample.kind}): {[k.value for k in seam]} (fold: {seam == folded})")
    if not args.no_forecast:
        print_forecast_tables(args)
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
