"""The stability detector: unit cases and properties (hypothesis) on synthetic telemetry."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calmon_core.conventions import wrap_deg
from calmon_core.models import TelemetrySample
from calmon_core.stability import StabilityDetector

STEP = 0.01  # telemetry resolution


def sample(t: float, yaw: float = 10.0, pitch: float = -5.0, roll: float = 0.0, zoom: float = 1.0):
    return TelemetrySample(timestamp=t, yaw=yaw, pitch=pitch, roll=roll, zoom=zoom)


def feed_still(det: StabilityDetector, start: float, end: float, dt: float = 0.1, **pose) -> float:
    """Samples every dt from start to end inclusive; returns the last timestamp."""
    t = start
    n = 0
    while t <= end + 1e-9:
        det.add(sample(t, **pose))
        n += 1
        t = start + n * dt
    return start + (n - 1) * dt


def test_no_samples_is_not_stable_and_says_so():
    status = StabilityDetector(1.0).status(100.0)
    assert not status.stable
    assert "no telemetry" in status.reason
    assert status.mean_pose is None


def test_still_camera_becomes_stable_after_stabilize_time_with_its_mean_pose():
    det = StabilityDetector(2.0)
    feed_still(det, 100.0, 101.9, yaw=12.34, pitch=-3.21)
    assert not det.status(101.9).stable
    feed_still(det, 102.0, 102.0, yaw=12.34, pitch=-3.21)
    status = det.status(102.0)
    assert status.stable, status.reason
    assert status.mean_pose.yaw == 12.34 and status.mean_pose.pitch == -3.21
    assert status.spread_deg == {"yaw": 0.0, "pitch": 0.0, "roll": 0.0}
    assert status.since == 100.0
    assert status.samples == 21


def test_movement_restarts_the_window_and_the_reason_says_what_moved():
    det = StabilityDetector(1.0)
    feed_still(det, 0.0, 2.0)
    assert det.status(2.0).stable
    det.add(sample(2.1, yaw=10.5))
    status = det.status(2.1)
    assert not status.stable
    assert "yaw" in status.reason and "moving" in status.reason
    assert status.since == 2.1
    feed_still(det, 2.2, 3.1, yaw=10.5)
    assert det.status(3.1).stable
    assert det.counters.moves == 1


def test_roll_and_zoom_changes_count_as_movement():
    det = StabilityDetector(1.0)
    feed_still(det, 0.0, 1.0)
    det.add(sample(1.1, roll=0.2))
    assert not det.status(1.1).stable
    feed_still(det, 1.2, 2.2, roll=0.2)
    assert det.status(2.2).stable
    det.add(sample(2.3, roll=0.2, zoom=2.0))
    assert not det.status(2.3).stable


def test_noise_within_deadband_is_tolerated_and_larger_steps_are_not():
    det = StabilityDetector(1.0, deadband_deg=0.05)
    noise = [0.0, 0.02, -0.02, 0.01, 0.03, -0.01]
    for i in range(30):
        det.add(sample(i * 0.1, yaw=10.0 + noise[i % len(noise)]))
    status = det.status(2.9)
    assert status.stable, status.reason
    assert status.spread_deg["yaw"] == pytest.approx(0.05)
    det.add(sample(3.0, yaw=10.1))
    assert not det.status(3.0).stable


def test_silence_is_not_stable_and_says_how_long():
    det = StabilityDetector(1.0, max_silence=2.0)
    feed_still(det, 0.0, 3.0)
    assert det.status(4.9).stable
    status = det.status(5.5)
    assert not status.stable
    assert "no telemetry for 2.5 s" in status.reason


def test_a_gap_inside_the_stream_restarts_the_window():
    det = StabilityDetector(1.0, max_silence=2.0)
    feed_still(det, 0.0, 3.0)
    feed_still(det, 6.0, 6.5)  # same pose after 3 s of silence: it may have moved meanwhile
    status = det.status(6.5)
    assert not status.stable
    assert status.since == 6.0
    assert "gap" in status.reason
    assert det.counters.gaps == 1
    feed_still(det, 6.6, 7.0)
    assert det.status(7.0).stable


def test_duplicates_and_out_of_order_samples_are_ignored_and_counted():
    det = StabilityDetector(1.0)
    feed_still(det, 0.0, 1.0)
    det.add(sample(1.0))  # repeated timestamp
    det.add(sample(0.5, yaw=50.0))  # late sample from the past, would look like a move
    det.add(sample(1.0, yaw=60.0))  # same timestamp, other values
    status = det.status(1.05)
    assert status.stable, status.reason
    assert det.counters.duplicates == 2
    assert det.counters.out_of_order == 1
    assert det.counters.moves == 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected_and_counted(bad):
    det = StabilityDetector(1.0)
    feed_still(det, 0.0, 0.5)
    det.add(sample(0.6, yaw=bad))
    det.add(sample(0.7, pitch=bad))
    det.add(TelemetrySample(timestamp=bad, yaw=1.0, pitch=1.0))
    feed_still(det, 0.8, 1.0)
    status = det.status(1.0)
    assert status.stable, status.reason
    assert det.counters.rejected_non_finite == 3
    assert "non-finite" in det.describe(1.0)


def test_yaw_wrap_at_180_is_not_movement():
    det = StabilityDetector(1.0, deadband_deg=0.05)
    yaws = [180.0, -180.0, 179.99, -179.98, 179.98]
    for i in range(20):
        det.add(sample(i * 0.1, yaw=yaws[i % len(yaws)]))
    status = det.status(1.9)
    assert status.stable, status.reason
    assert status.spread_deg["yaw"] <= 0.05
    assert abs(wrap_deg(status.mean_pose.yaw - 180.0)) < 0.02


def test_exact_180_and_minus_180_are_the_same_heading_without_deadband():
    det = StabilityDetector(1.0)
    for i in range(12):
        det.add(sample(i * 0.1, yaw=180.0 if i % 2 else -180.0))
    assert det.status(1.1).stable


def test_slow_drift_is_caught_over_a_long_still_period():
    """Old samples are summarised to bound memory; they must still bound the spread."""
    det = StabilityDetector(1.0, deadband_deg=0.05)
    for i in range(2000):
        det.add(sample(i * 0.1, yaw=10.0 + 0.0005 * i))
    status = det.status(199.9)
    assert status.stable  # over the last second it is within the deadband
    assert det.counters.moves > 0
    assert 199.9 - status.since <= 0.05 / 0.0005 * 0.1 + 0.2  # window no longer than the drift allows
    assert len(det._window) < 100  # memory stays bounded


def test_reset_forgets_everything():
    det = StabilityDetector(1.0)
    feed_still(det, 0.0, 2.0)
    det.reset()
    assert not det.status(2.0).stable
    assert det.counters.accepted == 0


def test_describe_and_summary_report_what_telemetry_did():
    det = StabilityDetector(1.0)
    for i in range(10):
        det.add(sample(i * 0.1, yaw=float(i)))
    text = det.describe(1.0)
    assert "10 samples" in text and "changed 9 times" in text and "last pose yaw 9.00" in text
    summary = det.summary(1.0)
    assert summary["moves"] == 9 and summary["samples"] == 10


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="stabilize_time"):
        StabilityDetector(-1.0)
    with pytest.raises(ValueError, match="deadband"):
        StabilityDetector(1.0, deadband_deg=math.nan)


# ----------------------------------------------------------------------------- properties

grid_values = st.integers(min_value=-18000, max_value=18000).map(lambda k: k * STEP)
steps = st.integers(min_value=1, max_value=50).map(lambda k: k * STEP)  # sample spacing <= 0.5 s


@st.composite
def moving_sequences(draw):
    stabilize = draw(st.integers(min_value=5, max_value=40)) * 0.1
    deadband = draw(st.integers(min_value=0, max_value=10)) * STEP
    n = draw(st.integers(min_value=2, max_value=60))
    t = draw(st.integers(min_value=0, max_value=1000)) * 0.1
    yaw, pitch = draw(grid_values), draw(grid_values) / 2
    samples = []
    for _ in range(n):
        # each step either holds, jitters inside the deadband, or moves
        kind = draw(st.sampled_from(["hold", "jitter", "move"]))
        if kind == "jitter" and deadband > 0:
            yaw += draw(st.integers(min_value=-1, max_value=1)) * STEP
        elif kind == "move":
            axis = draw(st.sampled_from(["yaw", "pitch"]))
            delta = draw(st.integers(min_value=1, max_value=500)) * STEP
            if axis == "yaw":
                yaw += delta
            else:
                pitch = max(-90.0, min(90.0, pitch + delta))
        samples.append(sample(t, yaw=wrap_deg(yaw), pitch=pitch))
        t += draw(steps)
    now = samples[-1].timestamp + draw(st.integers(min_value=0, max_value=20)) * 0.1
    return stabilize, deadband, samples, now


def _span(values: list[float]) -> float:
    return max(values) - min(values)


def _unwrap(yaws: list[float]) -> list[float]:
    out = [yaws[0]]
    for y in yaws[1:]:
        out.append(out[-1] + wrap_deg(y - out[-1]))
    return out


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moving_sequences())
def test_property_movement_within_the_last_stabilize_time_is_never_stable(case):
    stabilize, deadband, samples, now = case
    det = StabilityDetector(stabilize, deadband_deg=deadband, max_silence=2.0)
    for s in samples:
        det.add(s)
    # the samples inside the window, plus the last one before it (a move between the two
    # happened inside the window too); a change seen exactly stabilize_time ago is not inside
    # (a still sequence becomes stable exactly at stabilize_time), hence the float margin
    start = now - stabilize + 1e-6
    inside = [i for i, s in enumerate(samples) if s.timestamp >= start]
    first = max(0, inside[0] - 1) if inside else len(samples) - 1
    seen = samples[first:]
    yaws = _unwrap([s.yaw for s in samples])[first:]
    moved = _span(yaws) > deadband + STEP / 2 or _span([s.pitch for s in seen]) > deadband + STEP / 2
    if moved:
        status = det.status(now)
        assert not status.stable, (status.reason, seen)


@st.composite
def still_sequences(draw):
    stabilize = draw(st.integers(min_value=1, max_value=40)) * 0.1
    deadband = draw(st.integers(min_value=0, max_value=10)) * STEP
    half = int(round(deadband / STEP)) // 2  # noise amplitude in steps: peak to peak <= deadband
    base_yaw = draw(grid_values)
    base_pitch = draw(grid_values) / 2
    t0 = draw(st.integers(min_value=0, max_value=100000)) * 0.01
    times = [t0]
    while times[-1] < t0 + stabilize + 1.0:
        times.append(times[-1] + draw(steps))
    noise = st.integers(min_value=-half, max_value=half).map(lambda k: k * STEP)
    samples = [
        sample(t, yaw=wrap_deg(base_yaw + draw(noise)), pitch=base_pitch + draw(noise), roll=draw(noise)) for t in times
    ]
    return stabilize, deadband, t0, samples


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(still_sequences())
def test_property_still_sequence_becomes_stable_exactly_at_stabilize_time(case):
    stabilize, deadband, t0, samples = case
    det = StabilityDetector(stabilize, deadband_deg=deadband, max_silence=2.0)
    just_before = t0 + stabilize - 1e-6
    fed = 0
    for s in samples:
        if s.timestamp <= just_before:
            det.add(s)
            fed += 1
    assert not det.status(just_before).stable
    for s in samples[fed:]:
        if s.timestamp <= t0 + stabilize:
            det.add(s)
    status = det.status(t0 + stabilize)
    assert status.stable, status.reason
    # noise below the deadband never restarted the window
    assert det.counters.moves == 0
    assert status.since == t0
    for s in samples:
        det.add(s)  # the rest (earlier ones are ignored as repeats)
    assert det.status(samples[-1].timestamp).stable
    assert det.counters.moves == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(still_sequences(), st.integers(min_value=0, max_value=15))
def test_property_status_summarises_exactly_the_samples_of_the_last_stabilize_time(case, later):
    stabilize, deadband, _, samples = case
    det = StabilityDetector(stabilize, deadband_deg=deadband, max_silence=2.0)
    for s in samples:
        det.add(s)
    now = samples[-1].timestamp + later * 0.1
    status = det.status(now)
    inside = [i for i, s in enumerate(samples) if s.timestamp >= now - stabilize] or [len(samples) - 1]
    window = samples[inside[0] :]
    yaws = _unwrap([s.yaw for s in samples])[inside[0] :]
    assert status.samples == len(window)
    assert status.mean_pose is not None and status.spread_deg is not None
    assert abs(wrap_deg(status.mean_pose.yaw - sum(yaws) / len(yaws))) <= 2e-6
    assert status.mean_pose.pitch == pytest.approx(sum(s.pitch for s in window) / len(window), abs=2e-6)
    assert status.mean_pose.roll == pytest.approx(sum(s.roll for s in window) / len(window), abs=2e-6)
    assert status.spread_deg["yaw"] == pytest.approx(_span(yaws), abs=2e-6)
    assert status.spread_deg["pitch"] == pytest.approx(_span([s.pitch for s in window]), abs=2e-6)
