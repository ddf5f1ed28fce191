"""Frozen telemetry whose head moved before the grab (not across it) is caught, not measured as a breach."""

from __future__ import annotations

import math

import pytest

from calmon_core.capture_format import read_capture
from calmon_core.capture_ports import CaptureFailed
from tests.test_extraction import FakeCamera, FakeClock, ScriptedTelemetry, scripted_extractor, shifted, texture

PX_PER_6_DEG = 500.0 * math.tan(math.radians(6.0))  # the fake fleet's fx is 500 px


@pytest.mark.parametrize("phase", [0.0, 0.25, 0.5, 0.75])
def test_frozen_telemetry_with_a_head_jumping_6_deg_every_second_fails_as_frozen(tmp_path, phase):
    clock = FakeClock()
    scene, t0 = texture(), clock.now
    camera = FakeCamera(clock, view=lambda t: shifted(scene, PX_PER_6_DEG * math.floor(t - t0 + phase)))
    frozen = ScriptedTelemetry(clock, lambda t: (10.0, 0.0))
    extractor = scripted_extractor(tmp_path, clock, frozen, camera)
    with pytest.raises(CaptureFailed) as info:
        extractor.extract_query("fake", stabilize_time=3, timeout=20)
    assert "the image moved while telemetry stayed still (frozen telemetry?)" in str(info.value)


def test_frozen_telemetry_with_one_jump_before_the_grab_fails_as_frozen(tmp_path):
    clock = FakeClock()
    scene, t0 = texture(), clock.now
    # one 6° jump two seconds in, then the head holds still through every grab and check
    camera = FakeCamera(clock, view=lambda t: shifted(scene, PX_PER_6_DEG if t >= t0 + 2.0 else 0.0))
    frozen = ScriptedTelemetry(clock, lambda t: (10.0, 0.0))
    with pytest.raises(CaptureFailed) as info:
        scripted_extractor(tmp_path, clock, frozen, camera).extract_query("fake", stabilize_time=3, timeout=15)
    assert "between a frame grabbed once telemetry held still and this one" in str(info.value)


def test_telemetry_that_reports_the_move_keeps_the_frame_after_it(tmp_path):
    clock = FakeClock()
    scene, t0 = texture(), clock.now
    # the same jump, but telemetry reports it: a new stillness starts, and the frame after it is kept
    camera = FakeCamera(clock, view=lambda t: shifted(scene, PX_PER_6_DEG if t >= t0 + 2.0 else 0.0))
    live = ScriptedTelemetry(clock, lambda t: (16.0, 0.0) if t >= t0 + 2.0 else (10.0, 0.0))
    result = scripted_extractor(tmp_path, clock, live, camera).extract_query("fake", stabilize_time=3, timeout=15)
    frame = read_capture(result.folder).frames[0]
    assert frame.telemetry.yaw == 16.0 and frame.captured_at.timestamp() >= t0 + 5.0
    assert result.telemetry_summary["discarded_frames"] == []
