"""MQTT: a telemetry latch for one device topic, PTZ commands, and the Dagster resource.

paho-mqtt 2.x with the VERSION2 callback API. The latch runs paho's network thread
(loop_start + connect_async), so it reconnects on its own after a broker restart and
re-subscribes in on_connect. Payloads that are not a telemetry sample (binary junk, cut-off JSON,
wrong types, missing keys, NaN) are counted and dropped; nothing a device sends can crash it.

Samples are stamped with their ARRIVAL time on the latch's clock: the stability window and the
silence check must run on one clock, and device clocks drift. The device's own timestamp is used
only to drop repeated and out-of-order messages, and to report the device clock's offset.
"""

from __future__ import annotations

import json
import math
import string
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import dagster as dg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from calmon_core.camera_config import TelemetryConfig
from calmon_core.capture_ports import CaptureFailed
from calmon_core.config import TelemetryFields
from calmon_core.models import TelemetrySample
from calmon_core.telemetry import samples_after

HISTORY = 20000  # samples kept (over half an hour at 10 Hz)


class TelemetryUnavailable(CaptureFailed):
    """The broker cannot be reached; the message names it."""


def _lookup(payload: dict, key: str) -> Any:
    """A field by name, or by a dotted path into nested objects ('ptz.pan')."""
    if key in payload:
        return payload[key]
    node: Any = payload
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _timestamp(value: Any) -> float | None:
    """Unix seconds from seconds, milliseconds or an ISO 8601 string; None when absent/unreadable."""
    number = _number(value)
    if number is not None:
        return number / 1000.0 if number > 1e11 else number
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def parse_telemetry(
    payload: bytes, fields: TelemetryFields, received_at: float
) -> tuple[TelemetrySample, float | None] | None:
    """(sample stamped received_at, device timestamp) or None when the payload is not a sample."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    yaw, pitch = _number(_lookup(data, fields.yaw)), _number(_lookup(data, fields.pitch))
    if yaw is None or pitch is None:
        return None
    values = {"yaw": yaw, "pitch": pitch}
    for name, default in (("roll", 0.0), ("zoom", 1.0)):
        raw = _lookup(data, getattr(fields, name))
        if raw is None:
            values[name] = default
            continue
        number = _number(raw)
        if number is None:
            return None
        values[name] = number
    device_time = None
    raw_time = _lookup(data, fields.timestamp)
    if raw_time is not None:
        device_time = _timestamp(raw_time)
        if device_time is None:
            return None
    return TelemetrySample(timestamp=received_at, **values), device_time


class MqttTelemetryLatch:
    """Subscribes to one device's telemetry topic and keeps its recent samples.

    `reresolve`, when given, is asked for the broker's (host, port) after a failed connection
    attempt: a port-forward that died mid-check comes back on another local port, and paho would
    otherwise knock on the dead one until the check times out.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        fields: TelemetryFields = TelemetryFields(),
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        reresolve: Callable[[], tuple[str, int]] | None = None,
    ):
        self.host = host
        self.port = int(port)
        self.topic = topic
        self.fields = fields
        self.client_id = client_id or f"calmon-latch-{uuid.uuid4().hex[:12]}"
        self.username = username
        self.password = password
        self.connect_timeout = connect_timeout
        self.clock = clock
        self.garbage_count = 0
        self.received_count = 0
        self.duplicate_count = 0
        self.out_of_order_count = 0
        self.connections = 0
        self.retained_ignored = 0  # retained messages: old news the broker replays on subscribe
        self.foreign_ignored = 0  # messages of topics this latch did not subscribe to
        self.accept_retained = False  # on_change telemetry: a retained message gives the last value
        self.reresolve = reresolve
        self.reresolved = 0  # failed connections answered by a new address (restarted forwards)
        self.endpoint_error: str | None = None  # the address could not be re-resolved
        self.last_error: str | None = None
        self._samples: deque[TelemetrySample] = deque(maxlen=HISTORY)
        self._last_device_time: float | None = None
        self._clock_offsets: deque[float] = deque(maxlen=50)
        self._lock = threading.Condition()
        self._connected = threading.Event()
        self._client: mqtt.Client | None = None

    def configure_telemetry(self, config: TelemetryConfig) -> None:
        """How the site publishes: with on_change telemetry the retained message is the last value
        (stamped at its arrival, so it says nothing about how long the camera has been still)."""
        self.accept_retained = config.mode == "on_change"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> MqttTelemetryLatch:
        """Connect and subscribe; TelemetryUnavailable if the broker is not reached in time."""
        if self._client is not None:
            return self
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        if self.username:
            client.username_pw_set(self.username, self.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        client.reconnect_delay_set(min_delay=0.2, max_delay=2.0)
        self._client = client
        try:
            client.connect_async(self.host, self.port, keepalive=15)
            client.loop_start()
        except (OSError, ValueError) as exc:
            self.stop()
            raise TelemetryUnavailable(f"MQTT broker {self.host}:{self.port}: cannot connect: {exc}") from exc
        if not self._connected.wait(self.connect_timeout):
            why = f": {self.last_error}" if self.last_error else ""
            self.stop()
            raise TelemetryUnavailable(
                f"MQTT broker {self.host}:{self.port} not reachable within {self.connect_timeout:g} s"
                f"{why} (topic {self.topic})"
            )
        return self

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._connected.clear()

    def __enter__(self) -> MqttTelemetryLatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any = None
    ) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection ({reason_code})"
            return
        client.subscribe(self.topic, qos=0)  # again after every reconnect
        self.connections += 1
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any = None
    ) -> None:
        self._connected.clear()
        self.last_error = f"disconnected ({reason_code})"

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if self.reresolve is None:
            return
        try:
            host, port = self.reresolve()
        except Exception as exc:  # e.g. the forward died twice: paho keeps trying, describe() says why
            self.endpoint_error = str(exc)
            return
        if (host, int(port)) != (self.host, self.port):
            self.host, self.port = host, int(port)
            self.reresolved += 1
            # paho's own reconnect loop picks the new address up on its next attempt
            client.connect_async(self.host, self.port, keepalive=15)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if not mqtt.topic_matches_sub(self.topic, message.topic):
            # some brokers (amqtt 0.12) replay to a new client the retained messages of every
            # topic anyone subscribed to: another camera's pose must never pass for this one's
            with self._lock:
                self.foreign_ignored += 1
            return
        if message.retain and not self.accept_retained:
            with self._lock:
                self.retained_ignored += 1  # a stale message is no evidence the camera is alive
            return
        try:
            self.feed(message.payload)
        except Exception:  # a device must never be able to kill paho's network thread
            with self._lock:
                self.garbage_count += 1

    def feed(self, payload: bytes) -> TelemetrySample | None:
        """Take one payload as if it arrived now; returns the sample, or None if it was dropped."""
        received_at = self.clock()
        parsed = parse_telemetry(payload, self.fields, received_at)
        with self._lock:
            if parsed is None:
                self.garbage_count += 1
                return None
            sample, device_time = parsed
            if device_time is not None and self._last_device_time is not None:
                if device_time == self._last_device_time:
                    self.duplicate_count += 1
                    return None
                if device_time < self._last_device_time:
                    self.out_of_order_count += 1
                    return None
            if self._samples and sample.timestamp <= self._samples[-1].timestamp:
                # two messages within one clock tick: keep arrival stamps strictly increasing
                sample = sample.model_copy(update={"timestamp": math.nextafter(self._samples[-1].timestamp, math.inf)})
            if device_time is not None:
                self._last_device_time = device_time
                self._clock_offsets.append(device_time - received_at)
            self.received_count += 1
            self._samples.append(sample)
            self._lock.notify_all()
            return sample

    # ------------------------------------------------------------------ reading

    def latest(self) -> TelemetrySample | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def samples_since(self, t: float) -> list[TelemetrySample]:
        """Samples received strictly after t (latch clock), oldest first."""
        with self._lock:
            return samples_after(self._samples, t)

    def device_clock_offset(self) -> float | None:
        """Median of device timestamp minus arrival time over recent samples (seconds)."""
        with self._lock:
            offsets = sorted(self._clock_offsets)
        return offsets[len(offsets) // 2] if offsets else None

    def describe(self) -> str:
        state = "connected" if self.connected else f"NOT connected ({self.last_error or 'connecting'})"
        text = (
            f"MQTT {self.host}:{self.port} topic {self.topic} {state}: {self.received_count} samples, "
            f"{self.garbage_count} garbage payloads rejected"
        )
        if self.retained_ignored:
            text += f", {self.retained_ignored} retained (stale) messages ignored"
        if self.foreign_ignored:
            text += f", {self.foreign_ignored} messages of other topics ignored"
        if self.duplicate_count or self.out_of_order_count:
            text += f", {self.duplicate_count} repeated and {self.out_of_order_count} out-of-order dropped"
        if self.connections > 1:
            text += f", reconnected {self.connections - 1} times"
        if self.reresolved:
            text += f", moved to a re-resolved address {self.reresolved} times (restarted port-forward)"
        if self.endpoint_error:
            text += f"; the address could not be re-resolved: {self.endpoint_error}"
        return text

    def publish_command(self, topic: str, yaw: float, pitch: float, zoom: float, template: str | None = None) -> None:
        """A PTZ command over this latch's connection (devices with camera.ptz: mqtt)."""
        client = self._client
        if client is None or not self.connected:
            raise TelemetryUnavailable(
                f"MQTT broker {self.host}:{self.port}: not connected, cannot send the PTZ command to {topic}"
            )
        info = client.publish(topic, command_payload(yaw, pitch, zoom, template), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise TelemetryUnavailable(f"MQTT PTZ command to {topic} failed: {mqtt.error_string(info.rc)}")


def command_payload(yaw: float, pitch: float, zoom: float, template: str | None = None) -> bytes:
    """{"yaw", "pitch", "zoom"}, or the site's template with $yaw, $pitch, $zoom substituted."""
    if template:
        values = {"yaw": f"{float(yaw):.4f}", "pitch": f"{float(pitch):.4f}", "zoom": f"{float(zoom):.4f}"}
        try:
            return string.Template(template).substitute(values).encode()
        except (KeyError, ValueError) as exc:
            raise TelemetryUnavailable(f"camera.mqtt_command_template {template!r} is not usable: {exc}") from None
    return json.dumps({"yaw": float(yaw), "pitch": float(pitch), "zoom": float(zoom)}).encode()


class MqttPublishFailed(Exception):
    """A message could not be handed to the broker; the message names broker and topic."""


def publish_retained(
    host: str,
    port: int,
    topic: str,
    payload: bytes,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 10.0,
) -> None:
    """Publish one retained message (QoS 1) and wait for the broker's acknowledgement."""
    where = f"MQTT broker {host}:{port} topic {topic}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"calmon-pub-{uuid.uuid4().hex[:12]}")
    if username:
        client.username_pw_set(username, password)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(host, int(port), keepalive=15)
    except (OSError, ValueError) as exc:
        raise MqttPublishFailed(f"{where}: cannot connect: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(timeout) or refused:
            raise MqttPublishFailed(f"{where}: " + (f"connection refused ({refused[0]})" if refused else "no answer"))
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(timeout)
        if info.rc != mqtt.MQTT_ERR_SUCCESS or not info.is_published():
            raise MqttPublishFailed(f"{where}: not acknowledged within {timeout:g} s ({mqtt.error_string(info.rc)})")
    finally:
        client.disconnect()
        client.loop_stop()


class MqttResource(dg.ConfigurableResource):
    """Builds telemetry latches; endpoints come from devices.yaml (or a port-forward)."""

    connect_timeout: float = 10.0

    def latch(
        self,
        host: str,
        port: int,
        topic: str,
        fields: TelemetryFields | None = None,
        username: str | None = None,
        password: str | None = None,
        reresolve: Callable[[], tuple[str, int]] | None = None,
    ) -> MqttTelemetryLatch:
        return MqttTelemetryLatch(
            host,
            port,
            topic,
            fields or TelemetryFields(),
            username=username,
            password=password,
            connect_timeout=self.connect_timeout,
            reresolve=reresolve,
        )

    def publish_retained(
        self, host: str, port: int, topic: str, payload: bytes, username: str | None = None, password: str | None = None
    ) -> None:
        publish_retained(host, port, topic, payload, username, password, timeout=self.connect_timeout)
