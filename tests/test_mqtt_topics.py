"""A device's telemetry latch takes messages of its own topic only, whatever the broker sends it.

amqtt (0.12) replays, to every client that connects, the retained messages of every topic any
client has subscribed to: a check of one camera then received the retained pose of the camera
checked beside it, and reported that camera's pose as its own (a 5 deg "offset" at sigma 0.002 deg).
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from calmon_sim.broker import EmbeddedBroker
from resources.mqtt import MqttTelemetryLatch, publish_retained

KINDS = ["amqtt"] + (["mosquitto"] if shutil.which("mosquitto") else [])


def sample(yaw: float) -> bytes:
    return json.dumps({"yaw": yaw, "pitch": 0.0, "roll": 0.0, "zoom": 1.0}).encode()


def on_change_latch(broker: EmbeddedBroker, topic: str) -> MqttTelemetryLatch:
    latch = MqttTelemetryLatch(broker.host, broker.port, topic)
    latch.accept_retained = True  # on_change telemetry: the retained message is the last pose
    return latch


def wait_for_sample(latch: MqttTelemetryLatch, seconds: float = 10.0):
    deadline = time.time() + seconds
    while time.time() < deadline and latch.latest() is None:
        time.sleep(0.02)
    return latch.latest()


@pytest.mark.parametrize("kind", KINDS)
def test_a_latch_never_takes_another_topics_retained_pose(kind):
    broker = EmbeddedBroker(prefer=kind).start()
    try:
        assert broker.kind == kind
        neighbour_topic, own_topic = "calmon/site/cam-b/telemetry", "calmon/site/cam-a/telemetry"
        publish_retained(broker.host, broker.port, neighbour_topic, sample(0.0))
        with on_change_latch(broker, neighbour_topic) as neighbour:  # the check running beside this one
            assert wait_for_sample(neighbour).yaw == 0.0
            with on_change_latch(broker, own_topic) as own:
                # amqtt's replay follows the connection; mosquitto sends nothing to wait for
                deadline = time.time() + (10.0 if kind == "amqtt" else 1.0)
                while time.time() < deadline and not own.foreign_ignored and own.latest() is None:
                    time.sleep(0.02)
                assert own.latest() is None, f"took {own.latest()} from {neighbour_topic}"
                assert own.received_count == 0
                assert kind == "mosquitto" or "messages of other topics ignored" in own.describe()
                publish_retained(broker.host, broker.port, own_topic, sample(5.0))
                assert wait_for_sample(own).yaw == 5.0
                assert own.received_count == 1
    finally:
        broker.stop()
