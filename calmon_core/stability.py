"""When is a PTZ camera still? A pure, clock-injected detector fed with telemetry samples.

A frame grabbed mid-slew (or while telemetry still lags the head) makes a false calibration alarm,
so "still" is decided conservatively from the telemetry alone:

- The *still window* is the longest run of recent samples in which yaw, pitch, roll and zoom each
  stay within `deadband_deg` peak to peak (0.0 = exactly equal values, which is what quantised
  telemetry of a still head shows). A sample that does not fit restarts the window at the oldest
  sample it still agrees with, so the window never contains movement.
- The window starts at its first sample (the head may have arrived just before it, we cannot know
  when) and is stable once `now - start >= stabilize_time`.
- Silence breaks stillness: with no sample for more than `max_silence` seconds the camera is not
  called stable (it may be moving unseen), and a gap that long inside the stream restarts the
  window.
- NaN/inf samples are rejected, repeated and out-of-order timestamps ignored (all counted), and yaw
  and roll are unwrapped so a head resting at +-180 deg does not look like it spun round.

`now` and the sample timestamps must come from the same clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from calmon_core.conventions import wrap_deg
from calmon_core.models import Pose, TelemetrySample

AXES = ("yaw", "pitch", "roll", "zoom")
# Equal telemetry values can differ by float noise after unwrapping; telemetry resolution is 0.01.
_EPS = 1e-6


@dataclass
class StabilityStatus:
    stable: bool
    reason: str
    still_for: float
    mean_pose: Pose | None
    spread_deg: dict[str, float] | None  # peak-to-peak of yaw/pitch/roll over the stable window
    samples: int  # samples in the stable window
    since: float | None = None  # timestamp of the first sample of the still window
    zoom_spread: float | None = None


@dataclass
class _Entry:
    seq: int
    t: float
    values: tuple[float, float, float, float]  # yaw and roll unwrapped
    # running sums of (values - the window's base) up to and including this entry: the mean of any
    # run of the window in O(1) for status(), which every waiting capture asks 10 times a second
    sums: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)


@dataclass
class _Counters:
    accepted: int = 0
    rejected_non_finite: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    gaps: int = 0
    moves: int = 0
    longest_still: float = 0.0
    last_move_at: float | None = None
    last_move_deg: dict[str, float] = field(default_factory=dict)
    first_at: float | None = None


class StabilityDetector:
    def __init__(
        self,
        stabilize_time: float,
        deadband_deg: float = 0.0,
        max_silence: float = 2.0,
        zoom_deadband: float = 0.0,
    ):
        if not (math.isfinite(stabilize_time) and stabilize_time >= 0):
            raise ValueError(f"stabilize_time must be a number >= 0, got {stabilize_time!r}")
        if not (math.isfinite(deadband_deg) and deadband_deg >= 0):
            raise ValueError(f"deadband_deg must be a number >= 0, got {deadband_deg!r}")
        if not (max_silence > 0):
            raise ValueError(f"max_silence must be > 0, got {max_silence!r}")
        self.stabilize_time = float(stabilize_time)
        self.deadband_deg = float(deadband_deg)
        self.max_silence = float(max_silence)
        self.zoom_deadband = float(zoom_deadband)
        self._tolerance = (
            self.deadband_deg + _EPS,
            self.deadband_deg + _EPS,
            self.deadband_deg + _EPS,
            self.zoom_deadband + _EPS,
        )
        # samples older than this (relative to the newest) are folded into a min/max summary:
        # they still bound the window's spread but no longer count towards the mean
        # (max_silence is inf for publish-on-change telemetry, where silence means "unchanged")
        self._keep_seconds = self.stabilize_time + min(self.max_silence, 60.0) + 1.0
        self.reset()

    def reset(self) -> None:
        self._window: deque[_Entry] = deque()
        self._max_queues: list[deque[_Entry]] = [deque() for _ in AXES]
        self._min_queues: list[deque[_Entry]] = [deque() for _ in AXES]
        self._folded_low: list[float] | None = None
        self._folded_high: list[float] | None = None
        self._since: float | None = None
        # sums of each sample less the first one since the window was last cleared: small numbers, and
        # a still window's sums are exactly 0, so the mean of n equal values reads as that value
        self._base: tuple[float, float, float, float] | None = None
        self._sums = [0.0, 0.0, 0.0, 0.0]
        self._seq = 0
        self._last_t: float | None = None
        self._last_raw: tuple[float, float] | None = None  # last yaw, roll as reported
        self._last_unwrapped: tuple[float, float] | None = None
        self._last_sample: TelemetrySample | None = None
        self._gap_restart_at: float | None = None
        self.counters = _Counters()

    # ------------------------------------------------------------------ feeding

    def add(self, sample: TelemetrySample) -> None:
        raw = (sample.yaw, sample.pitch, sample.roll, sample.zoom)
        if not all(math.isfinite(v) for v in (*raw, sample.timestamp)):
            self.counters.rejected_non_finite += 1
            return
        t = float(sample.timestamp)
        if self._last_t is not None:
            if t == self._last_t:
                self.counters.duplicates += 1
                return
            if t < self._last_t:
                self.counters.out_of_order += 1
                return
        values = self._unwrap(sample)
        if self._last_t is not None and t - self._last_t > self.max_silence:
            self.counters.gaps += 1
            self._clear_window()
            self._gap_restart_at = t
        if self.counters.first_at is None:
            self.counters.first_at = t
        self.counters.accepted += 1
        self._last_t = t
        self._last_sample = sample
        self._push(_Entry(self._seq, t, values))
        self._seq += 1

    def _unwrap(self, sample: TelemetrySample) -> tuple[float, float, float, float]:
        if self._last_raw is None or self._last_unwrapped is None:
            yaw, roll = sample.yaw, sample.roll
        else:
            yaw = self._last_unwrapped[0] + wrap_deg(sample.yaw - self._last_raw[0])
            roll = self._last_unwrapped[1] + wrap_deg(sample.roll - self._last_raw[1])
        self._last_raw = (sample.yaw, sample.roll)
        self._last_unwrapped = (yaw, roll)
        return (yaw, sample.pitch, roll, sample.zoom)

    def _clear_window(self) -> None:
        self._window.clear()
        for q in (*self._max_queues, *self._min_queues):
            q.clear()
        self._folded_low = self._folded_high = None
        self._since = None
        self._base = None
        self._sums = [0.0, 0.0, 0.0, 0.0]

    def _conflicts_with_window(self, values: tuple[float, ...]) -> dict[str, float]:
        """Axes on which adding `values` would exceed the deadband, with the spread it would make."""
        out = {}
        for a, name in enumerate(AXES):
            if not self._window:
                break
            high = self._max_queues[a][0].values[a]
            low = self._min_queues[a][0].values[a]
            spread = max(high, values[a]) - min(low, values[a])
            if spread > self._tolerance[a]:
                out[name] = spread
        return out

    def _conflicts_with_folded(self, values: tuple[float, ...]) -> dict[str, float]:
        out = {}
        if self._folded_low is None or self._folded_high is None:
            return out
        for a, name in enumerate(AXES):
            spread = max(self._folded_high[a], values[a]) - min(self._folded_low[a], values[a])
            if spread > self._tolerance[a]:
                out[name] = spread
        return out

    def _pop_front(self) -> _Entry:
        entry = self._window.popleft()
        for q in (*self._max_queues, *self._min_queues):
            if q and q[0].seq == entry.seq:
                q.popleft()
        return entry

    def _push(self, entry: _Entry) -> None:
        moved = self._conflicts_with_folded(entry.values)
        if moved:
            # the summarised old samples disagree: drop them all (the window can only get shorter,
            # which errs on the side of "not yet stable")
            self._folded_low = self._folded_high = None
            self._since = self._window[0].t if self._window else None
        conflict = self._conflicts_with_window(entry.values)
        if conflict:
            moved.update(conflict)
            while self._window and self._conflicts_with_window(entry.values):
                self._pop_front()
            self._since = self._window[0].t if self._window else None
        if moved:
            self.counters.moves += 1
            self.counters.last_move_at = entry.t
            self.counters.last_move_deg = {k: round(v, 4) for k, v in moved.items()}
        if self._since is None:
            self._since = entry.t
        if self._base is None:
            self._base = entry.values
        for a in range(len(AXES)):
            self._sums[a] += entry.values[a] - self._base[a]
        entry.sums = tuple(self._sums)
        self._window.append(entry)
        for a in range(len(AXES)):
            maxq, minq = self._max_queues[a], self._min_queues[a]
            while maxq and maxq[-1].values[a] <= entry.values[a]:
                maxq.pop()
            maxq.append(entry)
            while minq and minq[-1].values[a] >= entry.values[a]:
                minq.pop()
            minq.append(entry)
        while len(self._window) > 1 and self._window[0].t < entry.t - self._keep_seconds:
            old = self._pop_front()
            if self._folded_low is None or self._folded_high is None:
                self._folded_low, self._folded_high = list(old.values), list(old.values)
            else:
                self._folded_low = [min(x, y) for x, y in zip(self._folded_low, old.values, strict=True)]
                self._folded_high = [max(x, y) for x, y in zip(self._folded_high, old.values, strict=True)]
        self.counters.longest_still = max(self.counters.longest_still, entry.t - self._since)

    # ------------------------------------------------------------------ asking

    def _summarise(self, cutoff: float) -> tuple[Pose, dict[str, float], float, int]:
        """Mean pose, yaw/pitch/roll spread, zoom spread and count of the window's samples stamped at
        or after `cutoff` (the newest alone when none is), without visiting them: the running sums
        give the mean, the monotonic queues the extremes (their first entry from that sample on)."""
        first = self._window[-1]
        for entry in self._window:  # from the oldest: the samples before the cutoff are few
            if entry.t >= cutoff:
                first = entry
                break
        last, base = self._window[-1], self._base
        assert base is not None  # set with the window's first entry
        n = last.seq - first.seq + 1  # the window is a contiguous run of samples
        means = [base[a] + (last.sums[a] - first.sums[a] + first.values[a] - base[a]) / n for a in range(len(AXES))]
        spreads = []
        for a in range(len(AXES)):
            high = next(e for e in self._max_queues[a] if e.seq >= first.seq).values[a]
            low = next(e for e in self._min_queues[a] if e.seq >= first.seq).values[a]
            spreads.append(high - low)
        # rounded: the mean of n equal values should read as that value (telemetry resolution is 0.01)
        pose = Pose(
            yaw=round(wrap_deg(means[0]), 6),
            pitch=round(means[1], 6),
            roll=round(wrap_deg(means[2]), 6),
            zoom=round(means[3], 6),
        )
        spread = {"yaw": round(spreads[0], 6), "pitch": round(spreads[1], 6), "roll": round(spreads[2], 6)}
        return pose, spread, round(spreads[3], 6), n

    @property
    def last_sample(self) -> TelemetrySample | None:
        return self._last_sample

    @property
    def since(self) -> float | None:
        return self._since

    def status(self, now: float) -> StabilityStatus:
        need = self.stabilize_time
        if self._last_t is None or not self._window or self._since is None:
            return StabilityStatus(False, "no telemetry received yet", 0.0, None, None, 0)
        silence = now - self._last_t
        still_for = max(0.0, now - self._since)
        mean_pose, spread, zoom_spread, count = self._summarise(now - need)
        if silence > self.max_silence:
            return StabilityStatus(
                False,
                f"no telemetry for {silence:.1f} s (more than max_silence {self.max_silence:g} s): "
                "the camera may be moving unseen",
                0.0,
                mean_pose,
                spread,
                count,
                self._since,
                zoom_spread,
            )
        if still_for + 1e-9 >= need:
            reason = f"still for {still_for:.1f} s (needed {need:g} s)"
            return StabilityStatus(True, reason, still_for, mean_pose, spread, count, self._since, zoom_spread)
        if self.counters.last_move_at is not None and self.counters.last_move_at >= self._since:
            moved = ", ".join(f"{k} by {v:.2f}" for k, v in self.counters.last_move_deg.items())
            reason = (
                f"moving: changed {moved} {now - self.counters.last_move_at:.1f} s ago; "
                f"still for {still_for:.1f} s of {need:g} s needed"
            )
        elif self._gap_restart_at is not None and self._since == self._gap_restart_at:
            reason = f"telemetry resumed after a gap; still for {still_for:.1f} s of {need:g} s needed"
        else:
            reason = f"still for {still_for:.1f} s of {need:g} s needed"
        return StabilityStatus(False, reason, still_for, mean_pose, spread, count, self._since, zoom_spread)

    def summary(self, now: float | None = None) -> dict:
        """What the telemetry did, for failure messages and run metadata."""
        c = self.counters
        out: dict = {
            "samples": c.accepted,
            "rejected_non_finite": c.rejected_non_finite,
            "duplicates": c.duplicates,
            "out_of_order": c.out_of_order,
            "gaps": c.gaps,
            "moves": c.moves,
            "longest_still_s": round(c.longest_still, 2),
        }
        if self._last_sample is not None:
            s = self._last_sample
            out["last_pose"] = {"yaw": s.yaw, "pitch": s.pitch, "roll": s.roll, "zoom": s.zoom}
        if now is not None:
            if self._last_t is not None:
                out["seconds_since_last_sample"] = round(now - self._last_t, 2)
            if c.last_move_at is not None:
                out["seconds_since_last_move"] = round(now - c.last_move_at, 2)
        return out

    def describe(self, now: float) -> str:
        """One sentence on what the telemetry did, for people reading a failure."""
        c = self.counters
        if c.accepted == 0:
            extra = []
            if c.rejected_non_finite:
                extra.append(f"{c.rejected_non_finite} non-finite samples rejected")
            return "no usable telemetry arrived" + (f" ({', '.join(extra)})" if extra else "")
        parts = [f"{c.accepted} samples"]
        if c.moves:
            ago = f", last {now - c.last_move_at:.1f} s before giving up" if c.last_move_at else ""
            parts.append(f"the pose changed {c.moves} times{ago}")
        else:
            parts.append("the pose never changed")
        parts.append(f"longest still period {c.longest_still:.1f} s")
        if c.gaps:
            parts.append(f"{c.gaps} gaps longer than {self.max_silence:g} s")
        if self._last_t is not None and now - self._last_t > self.max_silence:
            parts.append(f"silent for the last {now - self._last_t:.1f} s")
        for label, n in (
            ("duplicate", c.duplicates),
            ("out-of-order", c.out_of_order),
            ("non-finite", c.rejected_non_finite),
        ):
            if n:
                parts.append(f"{n} {label} samples ignored")
        s = self._last_sample
        if s is not None:
            parts.append(f"last pose yaw {s.yaw:.2f} pitch {s.pitch:.2f} roll {s.roll:.2f} zoom {s.zoom:.2f}")
        return "; ".join(parts)
