"""calmon_core.telemetry: the site-to-calmon transform and its plausibility check (pure)."""

from __future__ import annotations

import re

import pytest

from calmon_core.camera_config import TelemetryConfig, TelemetryTransform
from calmon_core.telemetry import ImplausibleTelemetry, transform_values


def test_identity_keeps_degrees():
    assert transform_values(12.5, -3.0, 0.1, 2.0, TelemetryTransform()) == pytest.approx((12.5, -3.0, 0.1, 2.0))


def test_hikvision_tenths_with_downward_tilt_and_0_360_yaw():
    hik = TelemetryTransform(yaw_scale=0.1, pitch_scale=0.1, pitch_sign=-1, zoom_scale=0.1, wrap="0_360")
    yaw, pitch, roll, zoom = transform_values(3517, 50, 0, 25, hik)
    assert (yaw, pitch, roll, zoom) == pytest.approx((-8.3, -5.0, 0.0, 2.5))


def test_offset_and_wrap():
    north_is_90 = TelemetryTransform(yaw_offset=-90.0)
    assert transform_values(10.0, 0.0, 0.0, 1.0, north_is_90)[0] == pytest.approx(-80.0)
    assert transform_values(300.0, 0.0, 0.0, 1.0, TelemetryTransform())[0] == pytest.approx(-60.0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((1117, 0, 0, 1), "yaw 1117 is not an angle in degrees"),
        ((10, -450, 0, 1), "pitch -450 is beyond +-90 degrees"),
        ((10, 0, 0, 0), "zoom 0 is not a zoom factor"),
    ],
)
def test_implausible_values_say_why(values, message):
    with pytest.raises(ImplausibleTelemetry, match=re.escape(message)):
        transform_values(*values, TelemetryTransform())


def test_silence_limits_by_mode():
    assert TelemetryConfig().silence_limit() == 2.0
    assert TelemetryConfig(mode="on_change").silence_limit() is None
    assert TelemetryConfig(mode="on_change", max_silence=600).silence_limit() == 600
    with pytest.raises(ValueError, match="source: poll is periodic"):
        TelemetryConfig(source="poll", mode="on_change")
    with pytest.raises(ValueError, match="finite non-zero"):
        TelemetryTransform(yaw_scale=0)
