"""Telemetry as real sites send it, against a real broker and simulated cameras: units in tenths,
tilt growing downwards, publish-on-change, a stale retained message, and position by polling."""

from __future__ import annotations

import re

import pytest

from calmon_core.capture_format import read_capture
from calmon_core.capture_ports import CaptureFailed
from calmon_core.config import Fleet
from calmon_core.extraction import CaptureExtractor
from calmon_sim.fleet import SimFleet
from calmon_sim.fleet_spec import FleetSpec
from resources.cameras import camera_client
from resources.mqtt import MqttResource
from tests.test_corrections import retained_message


def device(id_: str, **extra) -> dict:
    return {"id": id_, "resolution": [320, 180], "hfov_by_zoom": {1.0: 60.0}, **extra}


DEVICES = [
    device("tenths", telemetry_units="tenths", start_pose={"yaw": 111.7, "pitch": -5.0}),
    device("inverted", telemetry_tilt_inverted=True, start_pose={"yaw": 10.0, "pitch": 5.0}),
    device("onchange", telemetry_mode="on_change", start_pose={"yaw": 20.0, "pitch": 1.0}),
    device("stale", telemetry_mode="retained_only"),
    device("polled", telemetry_mode="none", protocol="onvif", username="op", password="pw-1", start_pose={"yaw": 33.0}),
]


@pytest.fixture(scope="module")
def fleet(shared_broker):
    spec = FleetSpec.model_validate({"deployments": [{"name": "sites", "devices": DEVICES}]})
    with SimFleet(spec, broker_host=shared_broker.host, broker_port=shared_broker.port) as sim:
        yield sim


def extractor(fleet: SimFleet, tmp_path, telemetry: dict | None = None, device_id: str = "") -> CaptureExtractor:
    """Extractor on the fleet's devices.yaml; `telemetry` replaces the device's telemetry section."""
    doc = fleet.devices_config()
    for dev in doc["deployments"][0]["devices"]:
        if dev["id"] == "polled":
            dev["camera"]["password"] = "pw-1"
        if dev["id"] == device_id and telemetry is not None:
            dev["telemetry"] = telemetry
    return site_extractor(doc, tmp_path)


def site_extractor(doc: dict, tmp_path) -> CaptureExtractor:
    """Direct mode: the broker and cameras at the addresses devices.yaml gives."""
    return CaptureExtractor(
        Fleet.model_validate(doc),
        telemetry_factory=lambda dep, dev: MqttResource().latch(
            dep.mqtt.host, dep.mqtt.port, dep.topic(dev.id), dep.telemetry_fields
        ),
        camera_factory=lambda dep, dev: camera_client(dev.id, dev.camera),
        workdir=tmp_path,
    )


def pose_of(result):
    return read_capture(result.folder).frames[0].telemetry


def test_tenths_without_a_scale_are_caught_as_implausible(fleet, tmp_path):
    with pytest.raises(CaptureFailed) as caught:
        extractor(fleet, tmp_path, {}, "tenths").extract_query("tenths", stabilize_time=1, timeout=4)
    message = str(caught.value)
    assert message.startswith("device tenths: telemetry did not hold still")
    assert "samples rejected as implausible (last: yaw 1117 is not an angle in degrees" in message
    assert "set telemetry.transform yaw_scale/pitch_scale: 0.1" in message
    result = extractor(fleet, tmp_path).extract_query("tenths", stabilize_time=1, timeout=10)  # as installed
    assert (pose_of(result).yaw, pose_of(result).pitch) == pytest.approx((111.7, -5.0), abs=1e-6)


def test_a_tilt_that_grows_downwards_is_turned_round(fleet, tmp_path):
    result = extractor(fleet, tmp_path).extract_query("inverted", stabilize_time=1, timeout=10)
    assert pose_of(result).pitch == pytest.approx(5.0, abs=1e-6)
    naive = extractor(fleet, tmp_path, {}, "inverted").extract_query("inverted", stabilize_time=1, timeout=10)
    assert pose_of(naive).pitch == pytest.approx(-5.0, abs=1e-6)  # no plausibility check can tell: the config must


def test_publish_on_change_counts_as_still(fleet, tmp_path):
    result = extractor(fleet, tmp_path).extract_query("onchange", stabilize_time=2, timeout=15)
    assert (pose_of(result).yaw, pose_of(result).pitch) == pytest.approx((20.0, 1.0), abs=1e-6)
    with pytest.raises(CaptureFailed) as caught:  # the same camera read as periodic telemetry
        extractor(fleet, tmp_path, {}, "onchange").extract_query("onchange", stabilize_time=2, timeout=4)
    message = str(caught.value)
    assert message.startswith("device onchange: telemetry did not hold still for 2 s within the 4 s timeout")
    assert "retained (stale) messages ignored" in message


def test_publish_on_change_sees_a_move(fleet, tmp_path):
    fleet.cameras["onchange"].move_to(25.0, 1.0)
    result = extractor(fleet, tmp_path).extract_query(
        "onchange", stabilize_time=1, timeout=15, active_ptz_stops=[(30.0, 2.0, 1.0)]
    )
    assert (pose_of(result).yaw, pose_of(result).pitch) == pytest.approx((30.0, 2.0), abs=1e-6)


def test_a_stale_retained_message_is_not_live_telemetry(fleet, tmp_path):
    # when this test runs first, the fleet may not have published yet: a latch subscribed before
    # the one message would receive it live, which is not this case. Once a subscriber has been
    # handed it (live or retained), the broker holds it for every later one.
    assert retained_message(fleet.broker_host, fleet.broker_port, "calmon/sites/stale/telemetry") is not None
    with pytest.raises(CaptureFailed) as caught:
        extractor(fleet, tmp_path).extract_query("stale", stabilize_time=1, timeout=4)
    message = str(caught.value)
    assert "device stale: telemetry did not hold still for 1 s" in message
    assert "no telemetry received yet" in message
    # the broker redelivers the retained message on every (re)subscription: amqtt under load may twice
    ignored = re.search(r"(\d+) retained \(stale\) messages ignored", message)
    assert ignored and int(ignored.group(1)) >= 1, message


def test_position_polled_over_onvif_feeds_the_stability_detector(fleet, tmp_path):
    result = extractor(fleet, tmp_path).extract_query("polled", stabilize_time=1, timeout=15)
    assert pose_of(result).yaw == pytest.approx(33.0, abs=1e-3)
    assert result.telemetry_summary["received_count"] >= 5


def test_ptz_over_mqtt_with_the_sites_payload_template(fleet, tmp_path):
    from resources.mqtt import TelemetryUnavailable, command_payload

    template = '{"command": "absolute", "yaw": $yaw, "pitch": $pitch, "zoom": $zoom}'
    assert command_payload(12.5, -3.0, 2.0, template) == (
        b'{"command": "absolute", "yaw": 12.5000, "pitch": -3.0000, "zoom": 2.0000}'
    )
    with pytest.raises(TelemetryUnavailable, match="mqtt_command_template .* is not usable"):
        command_payload(1, 2, 3, '{"pan": $pan}')
    doc = fleet.devices_config()
    for dev in doc["deployments"][0]["devices"]:
        if dev["id"] == "inverted":
            dev["camera"].update(ptz="mqtt", mqtt_command_template=template)
    result = site_extractor(doc, tmp_path).extract_query(
        "inverted", stabilize_time=1, timeout=15, active_ptz_stops=[(14.0, 3.0, 1.0)]
    )
    assert (pose_of(result).yaw, pose_of(result).pitch) == pytest.approx((14.0, 3.0), abs=1e-6)
    assert fleet.cameras["inverted"].target()[:2] == pytest.approx((10.0, 5.0))  # and back home
