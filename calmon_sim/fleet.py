"""A fleet of simulated PTZ cameras in one process.

Every camera serves HTTP on its own port (one small thread each, idle while nobody asks). Telemetry
for the WHOLE fleet goes out through ONE paho client driven by ONE publisher thread that ticks all
cameras at their rates, so 200 cameras at 10 Hz stay cheap; frames are rendered only on request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from calmon_core.config import Fleet
from calmon_sim.camera import SimCamera
from calmon_sim.fleet_spec import FleetSpec, SimDeploymentSpec, SimDeviceSpec, load_fleet_spec
from calmon_sim.http_api import FleetControlServer
from calmon_sim.onvif_service import PAN_LIMITS, TILT_LIMITS

log = logging.getLogger(__name__)

PUBLISH_TICK_S = 0.01  # scheduler resolution of the publisher thread


class SimFleet:
    def __init__(
        self,
        spec: FleetSpec,
        broker_host: str = "127.0.0.1",
        broker_port: int = 1883,
        host: str = "127.0.0.1",
        base_port: int | None = None,
        control_port: int = 0,
    ):
        self.spec = spec
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.host = host
        self.cameras: dict[str, SimCamera] = {}
        self._deployment_of: dict[str, SimDeploymentSpec] = {}
        self._telemetry_topic: dict[str, str] = {}
        self._command_topic: dict[str, SimCamera] = {}
        try:
            for index, (dep, dev) in enumerate(spec.devices()):
                port = 0 if base_port is None else base_port + index
                cam = SimCamera(dev, dep.name, host=host, port=port)
                self.cameras[dev.id] = cam
                self._deployment_of[dev.id] = dep
                self._telemetry_topic[dev.id] = dep.topic_template.format(deployment=dep.name, device=dev.id)
                self._command_topic[dep.command_topic_template.format(deployment=dep.name, device=dev.id)] = cam
            self.control = FleetControlServer(self.cameras, host=host, port=control_port)
        except Exception:
            self._stop_cameras()
            raise
        self._client: mqtt.Client | None = None
        self._stop = threading.Event()
        self._publisher: threading.Thread | None = None
        self._connected = threading.Event()
        self.published = 0  # telemetry messages handed to the broker (for benchmarks)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> SimFleet:
        return cls(load_fleet_spec(path), **kwargs)

    # ------------------------------------------------------------------ lifecycle

    def start(self, wait_connected: float = 10.0) -> SimFleet:
        """Serve every camera and start publishing telemetry; waits up to `wait_connected`
        seconds for the broker (then keeps trying in the background)."""
        for cam in self.cameras.values():
            cam.start()
        self.control.start()
        # the site's operator knows the cameras' passwords: devices_config() names them ${NAME},
        # and a calmon running in this process (`calmon demo`) finds them in its environment
        for name, value in self.camera_secrets().items():
            os.environ.setdefault(name, value)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"calmon-sim-{id(self):x}", clean_session=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=0.2, max_delay=2.0)
        client.max_queued_messages_set(10000)
        client.connect_async(self.broker_host, self.broker_port, keepalive=30)
        client.loop_start()
        self._client = client
        self._stop.clear()
        self._publisher = threading.Thread(target=self._publish_loop, name="sim-telemetry", daemon=True)
        self._publisher.start()
        if wait_connected and not self._connected.wait(wait_connected):
            log.warning(
                "simulated fleet: MQTT broker %s:%s not reachable yet; retrying in the background",
                self.broker_host,
                self.broker_port,
            )
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._publisher is not None:
            self._publisher.join(5)
            self._publisher = None
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self.control.stop()
        self._stop_cameras()

    def _stop_cameras(self) -> None:
        cams = list(self.cameras.values())
        if not cams:
            return
        # in parallel: each server takes up to a poll interval to notice it should stop
        with ThreadPoolExecutor(max_workers=min(32, len(cams))) as pool:
            list(pool.map(lambda c: c.stop(), cams))

    @property
    def control_url(self) -> str:
        """The fleet control service (calmon_sim.http_api.FleetControlServer): faults of any camera."""
        return self.control.url

    def __enter__(self) -> SimFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def calibrated(self, device_ids: Iterable[str] | None = None) -> Iterator[None]:
        """Zero the hidden offsets (and drift) of these cameras inside the block, restore them after.

        Offsets are measured against the reference scan (conventions.md), so a reference scan taken
        while a camera is already off absorbs that error. Real references are taken right after a
        calibration; demos, tests and benchmarks collect theirs inside this block so the fleet
        file's hidden offsets are what calmon must find afterwards.
        """
        cams = [self.cameras[d] for d in (device_ids if device_ids is not None else self.cameras)]
        saved = [(cam, cam.truth()["true_offset"], cam.truth()["drift"]) for cam in cams]
        for cam in cams:
            cam.set_drift()
            cam.set_true_offset(0.0, 0.0, 0.0)
        try:
            yield
        finally:
            for cam, offset, drift in saved:
                cam.set_true_offset(offset["yaw"], offset["pitch"], offset["roll"])
                cam.set_drift(**drift)

    @property
    def mqtt_connected(self) -> bool:
        return self._connected.is_set()

    # ------------------------------------------------------------------ MQTT

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any = None
    ) -> None:
        if reason_code.is_failure:
            log.warning("simulated fleet: broker refused the connection: %s", reason_code)
            return
        topics = [(topic, 0) for topic in self._command_topic]
        for i in range(0, len(topics), 100):  # (re)subscribe after every (re)connect
            client.subscribe(topics[i : i + 100])
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any = None
    ) -> None:
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        cam = self._command_topic.get(message.topic)
        if cam is not None:
            cam.handle_command(message.payload)

    def _publish_loop(self) -> None:
        cams = list(self.cameras.values())
        start = time.time()
        for i, cam in enumerate(cams):  # spread the cameras over one period, not all at once
            cam.next_telemetry_due = start + (i / max(1, len(cams))) / cam.spec.telemetry_rate_hz
        while not self._stop.is_set():
            now = time.time()
            next_due = now + 1.0
            client = self._client
            connected = client is not None and self._connected.is_set()
            for cam in cams:
                if cam.next_telemetry_due <= now:
                    period = 1.0 / cam.spec.telemetry_rate_hz
                    # keep the cadence; after a stall skip ahead rather than burst
                    cam.next_telemetry_due += period
                    if cam.next_telemetry_due < now:
                        cam.next_telemetry_due = now + period
                    try:
                        # not asked while disconnected: a payload computed then would count as sent
                        # (an on-change camera's change, a dead publisher's one retained message)
                        payloads = cam.telemetry_payloads(now) if connected else []
                        if payloads:
                            topic = self._telemetry_topic[cam.device_id]
                            for payload in payloads:
                                client.publish(topic, payload, qos=0, retain=cam.telemetry_retain)
                                self.published += 1
                    except Exception:  # one broken camera must not silence the fleet
                        log.exception("simulated camera %s: telemetry failed", cam.device_id)
                next_due = min(next_due, cam.next_telemetry_due)
            self._stop.wait(max(PUBLISH_TICK_S, next_due - time.time()))

    # ------------------------------------------------------------------ devices.yaml

    def devices_config(self) -> dict:
        """A devices.yaml document pointing calmon at this fleet (validates with calmon_core's Fleet)."""
        deployments = []
        for dep in self.spec.deployments:
            devices = []
            for dev in dep.devices:
                cam = self.cameras[dev.id]
                device: dict[str, Any] = {
                    "id": dev.id,
                    "camera": camera_section(dev, cam.base_url),
                    "intrinsics": {
                        "width": cam.width,
                        "height": cam.height,
                        "hfov_by_zoom": {float(z): float(h) for z, h in dev.hfov_by_zoom.items()},
                    },
                    "mode": dev.mode,
                    "reference_grid": dev.reference_grid.model_dump(),
                }
                if dev.active_ptz_stops:
                    device["active_ptz_stops"] = [list(s) for s in dev.active_ptz_stops]
                telemetry = telemetry_section(dev)
                if telemetry:
                    device["telemetry"] = telemetry
                devices.append(device)
            deployments.append(
                {
                    "name": dep.name,
                    "access": "direct",
                    "mqtt": {"host": self.broker_host, "port": self.broker_port},
                    "topic_template": dep.topic_template,
                    "command_topic_template": dep.command_topic_template,
                    "devices": devices,
                }
            )
        document = {"deployments": deployments}
        Fleet.model_validate(document)  # never hand out a file calmon would refuse
        return document

    def camera_secrets(self) -> dict[str, str]:
        """The environment variables devices_config() refers to for camera passwords, with values."""
        return {password_env(dev.id): dev.password or "" for _, dev in self.spec.devices() if dev.username is not None}

    def write_devices_yaml(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "# Written by `calmon sim` for the simulated fleet; the ports change on every run.\n"
        path.write_text(header + yaml.safe_dump(self.devices_config(), sort_keys=False), encoding="utf-8")
        return path

    def endpoints(self) -> list[dict]:
        """One line of facts per camera, for printing."""
        return [
            {
                "deployment": cam.deployment,
                "device": cam.device_id,
                "base_url": cam.base_url,
                "telemetry_topic": self._telemetry_topic[cam.device_id],
            }
            for cam in self.cameras.values()
        ]


def password_env(device_id: str) -> str:
    return "CALMON_CAMERA_PASSWORD_" + "".join(c if c.isalnum() else "_" for c in device_id.upper())


def camera_section(dev: SimDeviceSpec, base_url: str) -> dict[str, Any]:
    """devices.yaml's camera section for a simulated camera, as its installer would write it."""
    camera: dict[str, Any] = {"base_url": base_url, "ptz": "http"}
    if dev.protocol != "http":
        camera["protocol"] = dev.protocol
    if dev.username is not None:
        camera["username"] = dev.username
        camera["password"] = "${" + password_env(dev.id) + "}"  # the value stays in the environment
    lo, hi = dev.zoom_limits()
    if dev.protocol == "vapix":
        camera["vapix"] = {"zoom_range": [lo, hi]}
    elif dev.protocol == "onvif":
        onvif: dict[str, Any] = {"zoom_range": [lo, hi]}
        if not dev.onvif_degrees:
            onvif.update(pan_range=list(PAN_LIMITS), tilt_range=list(TILT_LIMITS))
        camera["onvif"] = onvif
    return camera


def telemetry_section(dev: SimDeviceSpec) -> dict[str, Any]:
    """devices.yaml's per-device telemetry section matching how the simulated camera publishes."""
    telemetry: dict[str, Any] = {}
    if dev.telemetry_mode == "none":
        telemetry["source"] = "poll"
    elif dev.telemetry_mode == "on_change":
        telemetry["mode"] = "on_change"
    # retained_only is a dead publisher whose last retained message stays on the broker: the site
    # was configured for the telemetry it sent while it worked (periodic)
    transform: dict[str, Any] = {}
    if dev.telemetry_units == "tenths":
        transform.update(yaw_scale=0.1, pitch_scale=0.1, roll_scale=0.1, zoom_scale=0.1, wrap="0_360")
    if dev.telemetry_tilt_inverted:
        transform["pitch_sign"] = -1
    if transform and dev.telemetry_mode != "none":
        telemetry["transform"] = transform
    return telemetry
