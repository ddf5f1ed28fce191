"""The simulated fleet from the outside, against a real MQTT broker and over real HTTP."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from calmon_core.config import ConfigError, load_fleet
from calmon_sim.fleet import SimFleet
from calmon_sim.fleet_spec import FleetSpec, load_fleet_spec

REPO = Path(__file__).resolve().parent.parent
SMALL = [320, 180]


def device(id_: str, **extra) -> dict:
    return {"id": id_, "resolution": SMALL, "hfov_by_zoom": {1.0: 60.0, 4.0: 15.0}, **extra}


FLEET = {
    "deployments": [
        {
            "name": "site-a",
            "devices": [
                device("slew-http", slew_speed_deg_s=20.0),
                device("slew-mqtt", slew_speed_deg_s=20.0),
                device(
                    "media",
                    true_offset={"yaw": 0.7, "pitch": -0.2, "roll": 0.1},
                    jpeg_quality=80,
                    degradation={"noise_sigma": 2.0},
                ),
            ],
        },
        {
            "name": "site-b",
            "devices": [
                device("faulty"),
                device("wanderer", patrol=True, patrol_pause_s=[0.2, 0.4], slew_speed_deg_s=60.0),
                device(
                    "active-1",
                    mode="active",
                    active_ptz_stops=[[10, 0, 1.0], [20, -5, 2.0]],
                    reference_grid={"yaws": [0, 30], "pitches": [0], "zoom": 1.0},
                ),
            ],
        },
    ]
}


class Recorder:
    """A paho subscriber keeping every message of a topic filter."""

    def __init__(self, host: str, port: int, topic: str):
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(topic)
        assert subscribed.wait(5), "subscription not acknowledged"

    def _on_message(self, client, userdata, message) -> None:
        with self._cond:
            self.messages.append((message.topic, message.payload))
            self._cond.notify_all()

    def samples(self, topic: str, since: int = 0) -> list[dict]:
        out = []
        for t, payload in self.messages[since:]:
            if t != topic:
                continue
            try:
                sample = json.loads(payload)
            except ValueError:
                continue
            if isinstance(sample, dict) and {"yaw", "pitch", "zoom", "timestamp"} <= set(sample):
                out.append(sample)
        return out

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def fleet(shared_broker):
    with SimFleet(FleetSpec.model_validate(FLEET), broker_host=shared_broker.host, broker_port=shared_broker.port) as f:
        yield f


@pytest.fixture
def recorder(shared_broker):
    r = Recorder(shared_broker.host, shared_broker.port, "calmon/#")
    yield r
    r.close()


def http(url: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="GET" if body is None else "POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def topic(cam) -> str:
    return f"calmon/{cam.deployment}/{cam.device_id}/telemetry"


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def assert_slew_seen(recorder: Recorder, cam, start_index: int, target_yaw: float) -> None:
    t = topic(cam)
    # telemetry ends up at the target and stays exactly there for several samples
    assert recorder.wait_for(
        lambda: len(s := recorder.samples(t, start_index)) >= 5 and all(x["yaw"] == target_yaw for x in s[-5:]),
        timeout=15,
    ), recorder.samples(t, start_index)[-5:]
    yaws = [s["yaw"] for s in recorder.samples(t, start_index)]
    moving = [y for y in yaws if y != yaws[0] and y != target_yaw]
    assert len(set(moving)) >= 3, f"telemetry did not show the slew: {yaws}"
    assert moving in (sorted(moving), sorted(moving, reverse=True)), f"yaw went back and forth: {yaws}"
    assert not cam.is_moving()


def test_http_ptz_command_slews_and_settles(fleet, recorder):
    cam = fleet.cameras["slew-http"]
    t = topic(cam)
    assert recorder.wait_for(lambda: len(recorder.samples(t)) >= 3)
    start = len(recorder.messages)
    status, body = http(cam.base_url + "/ptz/absolute", {"yaw": 25.0, "pitch": 3.0, "zoom": 2.0})
    assert status == 200 and json.loads(body)["target"] == {"yaw": 25.0, "pitch": 3.0, "zoom": 2.0}
    assert cam.is_moving()
    assert_slew_seen(recorder, cam, start, 25.0)
    last = recorder.samples(t)[-1]
    assert (last["pitch"], last["zoom"], last["roll"]) == (3.0, 2.0, 0.0)
    assert isinstance(last["timestamp"], float) and abs(last["timestamp"] - time.time()) < 60


def test_mqtt_ptz_command_slews_and_settles(fleet, recorder):
    cam = fleet.cameras["slew-mqtt"]
    t = topic(cam)
    assert recorder.wait_for(lambda: len(recorder.samples(t)) >= 3)
    start = len(recorder.messages)
    recorder.client.publish(f"calmon/{cam.deployment}/{cam.device_id}/ptz", json.dumps({"yaw": -20.0, "pitch": 0.0}))
    assert wait_until(cam.is_moving, 5)
    assert_slew_seen(recorder, cam, start, -20.0)


def test_bad_ptz_command_is_refused(fleet):
    cam = fleet.cameras["slew-http"]
    status, body = http(cam.base_url + "/ptz/absolute", {"pitch": 3.0})
    assert status == 400 and "yaw" in json.loads(body)["error"]


def test_snapshot_is_a_decodable_jpeg_of_the_true_view(fleet):
    cam = fleet.cameras["media"]
    status, data = http(cam.base_url + "/snapshot.jpg")
    assert status == 200 and data[:2] == b"\xff\xd8"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (180, 320, 3)
    # rendered at the true pose (reported + hidden offset), not at the reported one
    true = cam.true_pose()
    clean_true = cam.scene.render(true.yaw, true.pitch, true.roll, 60.0, 320, 180)
    rep = cam.reported_pose()
    clean_reported = cam.scene.render(rep.yaw, rep.pitch, rep.roll, 60.0, 320, 180)
    err_true = np.abs(image.astype(float) - clean_true).mean()
    err_reported = np.abs(image.astype(float) - clean_reported).mean()
    assert err_true < err_reported


def test_mjpeg_stream_opens_in_opencv(fleet):
    cam = fleet.cameras["media"]
    capture = cv2.VideoCapture(cam.base_url + "/stream.mjpg")
    try:
        assert capture.isOpened()
        ok, frame = capture.read()
        assert ok and frame.shape == (180, 320, 3)
        ok, frame = capture.read()
        assert ok
    finally:
        capture.release()


def test_status_and_truth(fleet):
    cam = fleet.cameras["media"]
    status, body = http(cam.base_url + "/status")
    health = json.loads(body)
    assert status == 200 and health["device_id"] == "media" and health["faults"] == {}
    assert set(health["pose"]) >= {"yaw", "pitch", "roll", "zoom"} and health["moving"] in (True, False)
    truth = json.loads(http(cam.base_url + "/truth")[1])
    assert truth["true_offset"] == pytest.approx({"yaw": 0.7, "pitch": -0.2, "roll": 0.1})
    assert truth["true"]["yaw"] == pytest.approx(truth["reported"]["yaw"] + 0.7, abs=0.011)
    status, _ = http(cam.base_url + "/truth", {"yaw": -1.5, "pitch": 0.25, "roll": 0.0})
    assert status == 200
    assert cam.truth()["true_offset"] == pytest.approx({"yaw": -1.5, "pitch": 0.25, "roll": 0.0})
    cam.set_true_offset(0.7, -0.2, 0.1)


def test_drift_ramps_the_hidden_offset():
    spec = FleetSpec.model_validate({"deployments": [{"name": "d", "devices": [device("drifter")]}]})
    fleet = SimFleet(spec, broker_port=1)  # never started: no broker needed
    try:
        cam = fleet.cameras["drifter"]
        cam.set_drift(yaw_deg_per_day=86400.0)  # 1 deg/s, to see it within a test
        first = cam.truth()["true_offset"]["yaw"]
        assert wait_until(lambda: cam.truth()["true_offset"]["yaw"] > first + 0.1, 5)
        cam.set_true_offset(0.5, 0.0, 0.0)  # a step restarts the ramp from the new value
        assert cam.truth()["true_offset"]["yaw"] == pytest.approx(0.5, abs=0.05)
    finally:
        fleet.stop()


def test_patrol_wanders_without_commands(fleet, recorder):
    cam = fleet.cameras["wanderer"]
    t = topic(cam)
    assert recorder.wait_for(lambda: len({(s["yaw"], s["pitch"]) for s in recorder.samples(t)}) >= 10, 15)
    assert not cam.faults


def test_fault_offline_refuses_connections_and_silences_telemetry(fleet, recorder):
    cam = fleet.cameras["faulty"]
    t = topic(cam)
    status, _ = http(cam.base_url + "/faults", {"offline": True})
    assert status == 200
    with pytest.raises(urllib.error.URLError) as info:
        http(cam.base_url + "/status")
    assert isinstance(info.value.reason, ConnectionRefusedError)
    time.sleep(0.3)  # let telemetry already in flight arrive
    start = len(recorder.messages)
    other = topic(fleet.cameras["media"])
    assert recorder.wait_for(lambda: len(recorder.samples(other, start)) >= 5)
    assert recorder.samples(t, start) == []
    cam.clear_faults()
    status, body = http(cam.base_url + "/status")
    assert status == 200 and json.loads(body)["faults"] == {}
    assert recorder.wait_for(lambda: len(recorder.samples(t, start)) >= 2)


def test_offline_camera_keeps_its_port_so_it_can_come_back():
    from calmon_sim.http_api import CameraHttpServer

    class Camera:  # what the server asks of a camera before any request
        device_id, offline = "cam-port", False

    camera = Camera()
    server = CameraHttpServer(camera, "127.0.0.1")  # type: ignore[arg-type]
    server.wanted = True
    server.sync()
    camera.offline = True
    server.sync()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    # nothing else gets the port meanwhile (an outgoing connection's ephemeral port took it once)
    intruder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(OSError) as taken:
        intruder.bind(("127.0.0.1", server.port))
    intruder.close()
    assert taken.value.errno == errno.EADDRINUSE
    camera.offline = False
    server.sync()
    socket.create_connection(("127.0.0.1", server.port), timeout=2).close()  # back on the same port
    server.wanted = False
    server.sync()  # stopped for good: the port is given back
    free = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    free.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    free.bind(("127.0.0.1", server.port))
    free.close()


def test_fault_frozen_telemetry_repeats_while_camera_moves(fleet, recorder):
    cam = fleet.cameras["faulty"]
    t = topic(cam)
    http(cam.base_url + "/faults", {"frozen_telemetry": True})
    try:
        frozen = cam.reported_pose()
        true_before = cam.true_pose()
        start = len(recorder.messages)
        cam.move_to(frozen.yaw + 40.0, frozen.pitch)
        assert recorder.wait_for(lambda: len(recorder.samples(t, start)) >= 8)
        assert cam.true_pose().yaw != true_before.yaw  # it really moved...
        assert {(s["yaw"], s["pitch"], s["zoom"]) for s in recorder.samples(t, start)} == {
            (frozen.yaw, frozen.pitch, frozen.zoom)
        }  # ...but telemetry says it did not
    finally:
        http(cam.base_url + "/faults", {"clear": True})
    assert wait_until(lambda: cam.reported_pose().yaw != frozen.yaw)


def test_fault_never_settle_keeps_telemetry_changing(fleet, recorder):
    cam = fleet.cameras["faulty"]
    t = topic(cam)
    assert wait_until(lambda: not cam.is_moving(), 10)
    cam.set_faults(never_settle=True)
    try:
        start = len(recorder.messages)
        assert recorder.wait_for(lambda: len(recorder.samples(t, start)) >= 10)
        values = [(s["yaw"], s["pitch"]) for s in recorder.samples(t, start)][:10]
        assert all(a != b for a, b in zip(values, values[1:], strict=False)), values
        assert not cam.is_moving()
    finally:
        cam.clear_faults()


def test_fault_garbage_payloads_are_interleaved(fleet, recorder):
    cam = fleet.cameras["faulty"]
    t = topic(cam)
    cam.set_faults(garbage_mqtt=True)
    try:
        start = len(recorder.messages)
        assert recorder.wait_for(lambda: len(recorder.samples(t, start)) >= 6)
    finally:
        cam.clear_faults()
    payloads = [p for tt, p in recorder.messages[start:] if tt == t]

    def is_sample(p: bytes) -> bool:
        try:
            d = json.loads(p)
        except ValueError:
            return False
        return isinstance(d, dict) and isinstance(d.get("yaw"), float) and "timestamp" in d

    junk = [p for p in payloads if not is_sample(p)]
    assert len(junk) >= 4 and any(not p.startswith(b"{") for p in junk)


def test_fault_corrupt_jpeg_does_not_decode(fleet):
    cam = fleet.cameras["faulty"]
    http(cam.base_url + "/faults", {"corrupt_jpeg": True})
    try:
        status, data = http(cam.base_url + "/snapshot.jpg")
        assert status == 200 and len(data) > 0
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None
    finally:
        http(cam.base_url + "/faults", {"clear": True})
    data = http(cam.base_url + "/snapshot.jpg")[1]
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


def test_fault_slow_responses(fleet):
    cam = fleet.cameras["faulty"]
    http(cam.base_url + "/faults", {"slow_seconds": 2.0})
    try:
        with pytest.raises(TimeoutError):
            http(cam.base_url + "/status", timeout=0.5)
        status, _ = http(cam.base_url + "/status", timeout=10)
        assert status == 200
    finally:
        status, body = http(cam.base_url + "/faults", {"clear": True}, timeout=1.0)
    assert json.loads(body)["faults"] == {}


def test_unknown_fault_is_refused(fleet):
    cam = fleet.cameras["faulty"]
    status, body = http(cam.base_url + "/faults", {"on_fire": True})
    assert status == 400 and "on_fire" in json.loads(body)["error"]


def test_written_devices_yaml_validates(fleet, tmp_path):
    path = fleet.write_devices_yaml(tmp_path / "devices.yaml")
    loaded = load_fleet(path)
    dep, dev = loaded.find("active-1")
    assert dep.name == "site-b" and dep.access == "direct"
    assert (dep.mqtt.host, dep.mqtt.port) == (fleet.broker_host, fleet.broker_port)
    assert dep.topic("active-1") == "calmon/site-b/active-1/telemetry"
    assert dep.command_topic("active-1") == "calmon/site-b/active-1/ptz"
    assert dev.camera.base_url == fleet.cameras["active-1"].base_url and dev.camera.ptz == "http"
    assert dev.mode == "active" and dev.active_ptz_stops == [(10, 0, 1.0), (20, -5, 2.0)]
    assert dev.intrinsics.at_zoom(1.0).hfov_deg == pytest.approx(60.0)
    assert [p.yaw for p in dev.reference_grid.poses()] == [0, 30]


def test_telemetry_resumes_after_broker_restart(broker):
    spec = FleetSpec.model_validate({"deployments": [{"name": "d", "devices": [device("phoenix")]}]})
    with SimFleet(spec, broker_host=broker.host, broker_port=broker.port) as fleet:
        assert fleet.mqtt_connected
        broker.restart()
        r = Recorder(broker.host, broker.port, "calmon/d/phoenix/#")
        try:
            assert r.wait_for(lambda: len(r.samples("calmon/d/phoenix/telemetry")) >= 3, 15)
            r.client.publish("calmon/d/phoenix/ptz", json.dumps({"yaw": 5.0, "pitch": 0.0}))
            assert wait_until(lambda: fleet.cameras["phoenix"].target()[0] == 5.0, 10)
        finally:
            r.close()


def test_fleet_file_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "fleet.yaml"
    bad.write_text(
        "deployments:\n  - name: d\n    devices:\n"
        "      - {id: c1, drift: {yaw_per_day: 1}}\n"
        "      - {id: c2, faults: {offline: maybe}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_fleet_spec(bad)
    text = str(info.value)
    assert f"{bad}: deployments[0].devices[0].drift.yaw_per_day" in text
    assert "deployments[0].devices[1].faults" in text and "offline" in text


def test_example_fleet_file_is_valid():
    spec = load_fleet_spec(REPO / "configs" / "fleet.example.yaml")
    devices = [dev for _, dev in spec.devices()]
    assert len(spec.deployments) == 2 and len(devices) >= 4
    assert any(max(abs(d.true_offset.yaw), abs(d.true_offset.pitch)) > 0.5 for d in devices)
    assert any(d.drift.yaw_deg_per_day for d in devices)
    assert any(d.mode == "active" and d.active_ptz_stops for d in devices)


def test_missing_scene_file_names_the_device(tmp_path, monkeypatch):
    monkeypatch.setenv("CALMON_SCENES_DIR", str(tmp_path))
    spec = FleetSpec.model_validate(
        {"deployments": [{"name": "d", "devices": [device("lost", scene="no_such_photo_here.jpg")]}]}
    )
    with pytest.raises(ValueError, match="lost"):
        SimFleet(spec)
    spec = FleetSpec.model_validate(
        {
            "deployments": [
                {
                    "name": "d",
                    "devices": [device("saved", scene="no_such_photo_here.jpg", scene_fallback="synthetic:0")],
                }
            ]
        }
    )
    fleet = SimFleet(spec)
    assert fleet.cameras["saved"].scene.label == "synthetic:0"
    fleet.stop()


def test_calmon_sim_command_runs_and_stops_on_sigint(tmp_path):
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(json.dumps({"deployments": [{"name": "d", "devices": [device("c1"), device("c2")]}]}))
    devices_yaml = tmp_path / "out" / "devices.yaml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "calmon_cli",
            "sim",
            "--fleet",
            str(fleet_file),
            "--embedded-broker",
            "--write-devices",
            str(devices_yaml),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("running"):
                break
        assert any("http://127.0.0.1:" in line for line in lines), lines
        fleet = load_fleet(devices_yaml)
        base_url = fleet.find("c2")[1].camera.base_url
        assert http(base_url + "/status")[0] == 200
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(lines) + out
    assert "stopped" in out
    with pytest.raises(urllib.error.URLError):
        http(base_url + "/status", timeout=2)
