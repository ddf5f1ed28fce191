"""The current correction (calmon_core.corrections) and its retained MQTT message on a real broker."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from calmon_core.config import ConfigError, load_settings
from calmon_core.corrections import correction_payload, correction_topic, current_correction, topic_problem
from calmon_core.models import CalibrationResult, CheckStatus
from resources.mqtt import MqttPublishFailed, publish_retained

START = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


def row(hour: int, status: CheckStatus, yaw: float | None = None, sigma: float = 0.01) -> CalibrationResult:
    at = START + timedelta(hours=hour)
    measured = status in (CheckStatus.ok, CheckStatus.breach)
    return CalibrationResult(
        deployment_name="harbor",
        device_id="cam-1",
        timestamp=at + timedelta(minutes=5),
        check_partition=at.strftime("%Y-%m-%d-%H:%M"),
        yaw_offset=yaw if measured else None,
        pitch_offset=-0.1 if measured else None,
        roll_offset=0.02 if measured else None,
        yaw_uncertainty=sigma if measured else None,
        pitch_uncertainty=sigma if measured else None,
        roll_uncertainty=sigma if measured else None,
        success=measured,
        status=status,
    )


def test_correction_is_the_latest_conclusive_check_since_the_first_that_agrees_with_it():
    rows = [
        row(0, CheckStatus.ok, yaw=0.1),  # before the camera was knocked
        row(1, CheckStatus.breach, yaw=0.80),
        row(2, CheckStatus.inconclusive),  # a night gap does not end the episode
        row(3, CheckStatus.failed),
        row(4, CheckStatus.breach, yaw=0.81),
        row(5, CheckStatus.inconclusive),  # the newest check could not tell: the correction stands
    ]
    correction = current_correction(list(reversed(rows)), "gauge-42")  # order of the rows does not matter
    assert correction["offsets_deg"] == {"yaw": 0.81, "pitch": -0.1, "roll": 0.02}
    assert correction["uncertainty_deg"] == {"yaw": 0.01, "pitch": 0.01, "roll": 0.01}
    assert correction["check_partition"] == "2026-11-20-04:00" and correction["status"] == "breach"
    assert correction["since_check_partition"] == "2026-11-20-01:00"
    assert correction["since"] == rows[1].timestamp.isoformat()
    assert correction["reference_gauge"] == "gauge-42"
    assert json.loads(correction_payload(correction)) == correction


def test_no_correction_without_a_conclusive_check():
    assert current_correction([row(0, CheckStatus.failed), row(1, CheckStatus.inconclusive)], None) is None


def test_topic_templates_name_deployment_and_device_only():
    assert correction_topic("calmon/{deployment}/{device}/correction", "harbor", "cam-1") == (
        "calmon/harbor/cam-1/correction"
    )
    assert topic_problem("calmon/{deployment}/{device}/correction") is None
    assert "{deployment} and {device} only" in topic_problem("calmon/{site}/{device}")
    assert "wildcards" in topic_problem("calmon/+/{device}")


def test_a_bad_topic_in_the_ini_is_one_clear_message(tmp_path):
    ini = tmp_path / "calibration_monitoring.ini"
    ini.write_text("[corrections]\nmqtt_topic = calmon/{camera}/correction\n")
    with pytest.raises(ConfigError) as err:
        load_settings(ini)
    assert "corrections.mqtt_topic" in str(err.value) and "{camera}" in str(err.value)
    ini.write_text("[check]\nthreshold_deg = 0.5\n")
    assert load_settings(ini).corrections.mqtt_topic is None  # off by default


def retained_message(host: str, port: int, topic: str, timeout: float = 10.0) -> mqtt.MQTTMessage | None:
    """What a client subscribing now gets on `topic` (the broker's retained message), or None."""
    got: list[mqtt.MQTTMessage] = []
    arrived = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}")
    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
    client.on_message = lambda c, u, m: (got.append(m), arrived.set())
    client.connect(host, port)
    client.loop_start()
    try:
        arrived.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0] if got else None


def test_the_correction_is_retained_for_clients_that_subscribe_later(broker):
    topic = "calmon/harbor/cam-1/correction"
    first = current_correction([row(1, CheckStatus.breach, yaw=0.8)], "gauge-42")
    publish_retained(broker.host, broker.port, topic, correction_payload(first))
    newer = current_correction([row(1, CheckStatus.breach, yaw=0.8), row(2, CheckStatus.ok, yaw=0.0)], "gauge-43")
    publish_retained(broker.host, broker.port, topic, correction_payload(newer))
    message = retained_message(broker.host, broker.port, topic)
    assert message is not None and message.retain
    assert json.loads(message.payload) == newer  # the broker keeps the latest only


def test_an_unreachable_broker_is_a_clear_error(broker):
    port = broker.port
    broker.stop()
    with pytest.raises(MqttPublishFailed) as err:
        publish_retained(broker.host, port, "calmon/x/cam-1/correction", b"{}", timeout=2)
    assert f"{broker.host}:{port}" in str(err.value) and "calmon/x/cam-1/correction" in str(err.value)
    broker.start()
