"""Query and reference captures against a real MQTT broker and the simulated fleet (640x360),
plus the orchestration on a fake clock and the camera client's errors against real HTTP servers."""

from __future__ import annotations

import json
import math
import threading
import time

import cv2
import numpy as np
import pytest

from calmon_core.capture_format import encode_jpeg, load_frame_image, read_capture
from calmon_core.config import CameraEndpoint, Fleet, TelemetryFields
from calmon_core.conventions import wrap_deg
from calmon_core.extraction import (
    HOME_STILL_SECONDS,
    CaptureExtractor,
    CaptureFailed,
    TelemetryWatch,
    image_motion_px,
)
from calmon_core.models import CaptureKind, CaptureMode, TelemetrySample
from calmon_core.stacking import LOW_LIGHT_FRAMES, burst_size, stack_frames
from calmon_sim.fleet import SimFleet
from calmon_sim.fleet_spec import FleetSpec
from resources.camera import CameraClient, CameraError, CameraResource
from resources.mqtt import (
    MqttResource,
    MqttTelemetryLatch,
    TelemetryUnavailable,
)

SIZE = [640, 360]


def device(id_: str, **extra) -> dict:
    return {
        "id": id_,
        "scene": "synthetic:1",
        "resolution": SIZE,
        "hfov_by_zoom": {1.0: 60.0, 4.0: 15.0},
        "patrol": False,
        **extra,
    }


FLEET = {
    "deployments": [
        {
            "name": "site-a",
            "devices": [
                device("plain"),
                device("patrol", patrol=True, patrol_pause_s=[0.2, 0.5], slew_speed_deg_s=30.0),
                device("jitter", faults={"never_settle": True}),
                device(
                    "active",
                    start_pose={"yaw": -5.0, "pitch": 2.0, "zoom": 1.0},
                    slew_speed_deg_s=60.0,
                    reference_grid={"yaws": [-10, 10], "pitches": [0], "zoom": 1.0},
                ),
                device("garbage", faults={"garbage_mqtt": True}),
                device("offline"),
                device("mqtt-ptz", start_pose={"yaw": 3.0, "pitch": 0.0, "zoom": 1.0}),
                device("media", start_pose={"yaw": 30.0, "pitch": 1.0, "zoom": 1.0}),
            ],
        }
    ]
}


@pytest.fixture(scope="module")
def site(shared_broker):
    fleet = SimFleet(
        FleetSpec.model_validate(FLEET), broker_host=shared_broker.host, broker_port=shared_broker.port
    ).start()
    config = fleet.devices_config()
    for dev in config["deployments"][0]["devices"]:
        if dev["id"] == "mqtt-ptz":
            dev["camera"]["ptz"] = "mqtt"
    yield fleet, Fleet.model_validate(config)
    fleet.stop()


def direct_telemetry(deployment, device) -> MqttTelemetryLatch:
    """The device's latch at the broker devices.yaml names (direct access, no port-forward)."""
    return MqttTelemetryLatch(
        deployment.mqtt.host, deployment.mqtt.port, deployment.topic(device.id), deployment.telemetry_fields
    )


def direct_camera(deployment, device) -> CameraClient:
    return CameraClient(device.id, device.camera)


@pytest.fixture
def extractor(site, tmp_path):
    return CaptureExtractor(site[1], telemetry_factory=direct_telemetry, camera_factory=direct_camera, workdir=tmp_path)


def assert_pose_equal(telemetry, pose, tol=1e-6):
    assert abs(wrap_deg(telemetry.yaw - pose.yaw)) < tol
    assert abs(telemetry.pitch - pose.pitch) < tol
    assert abs(telemetry.roll - pose.roll) < tol
    assert abs(telemetry.zoom - pose.zoom) < tol


# ----------------------------------------------------------------------------- passive


def test_passive_capture_writes_a_valid_manifest_with_the_reported_pose(site, extractor):
    fleet, _ = site
    result = extractor.extract_query("plain", stabilize_time=1, timeout=30)
    capture = read_capture(result.folder)
    assert capture.kind == CaptureKind.query and capture.mode == CaptureMode.passive
    assert capture.deployment_name == "site-a" and capture.device_id == "plain"
    assert len(capture.frames) == 1
    frame = capture.frames[0]
    assert_pose_equal(frame.telemetry, fleet.cameras["plain"].reported_pose())
    assert (frame.width, frame.height) == tuple(SIZE)
    assert frame.hfov_deg == pytest.approx(60.0)
    assert load_frame_image(result.folder, capture, 0).shape == (360, 640, 3)
    assert result.folder.parent == extractor.workdir
    assert result.telemetry_summary["samples"] >= 10
    assert result.failed_stops == []
    assert "stacked_frames" not in frame.model_extra  # a daylight frame is one snapshot


def test_passive_capture_waits_out_a_patrolling_camera(site, extractor):
    fleet, _ = site
    cam = fleet.cameras["patrol"]
    stopped_at: list[float] = []

    def stop_patrol() -> None:
        cam.set_patrol(False)
        stopped_at.append(time.time())

    timer = threading.Timer(2.5, stop_patrol)
    timer.start()
    try:
        result = extractor.extract_query("patrol", stabilize_time=1, timeout=40)
    finally:
        timer.cancel()
    assert stopped_at, "captured while the camera was still patrolling"
    frame = read_capture(result.folder).frames[0]
    assert frame.captured_at.timestamp() > stopped_at[0]
    assert result.telemetry_summary["moves"] > 0  # it did see the patrol moving
    assert not cam.is_moving()
    assert_pose_equal(frame.telemetry, cam.reported_pose())


def test_never_settling_camera_times_out_with_a_clear_failure(extractor):
    with pytest.raises(CaptureFailed) as info:
        extractor.extract_query("jitter", stabilize_time=1, timeout=3)
    message = str(info.value)
    assert "device jitter" in message
    assert "did not hold still for 1 s" in message and "3 s timeout" in message
    assert "the pose changed" in message and "samples" in message


def test_garbage_payloads_are_counted_and_the_capture_still_succeeds(site, extractor):
    fleet, _ = site
    result = extractor.extract_query("garbage", stabilize_time=1, timeout=30)
    assert result.telemetry_summary["garbage_count"] > 0
    assert_pose_equal(read_capture(result.folder).frames[0].telemetry, fleet.cameras["garbage"].reported_pose())


def test_offline_camera_fails_fast_naming_the_device(site, extractor):
    fleet, _ = site
    fleet.cameras["offline"].set_faults(offline=True)
    with pytest.raises(CameraError, match=r"device offline: camera offline: connection refused"):
        extractor.extract_query("offline", stabilize_time=1, timeout=600)
    with pytest.raises(CameraError, match="device offline"):
        extractor.extract_query("offline", stabilize_time=1, timeout=600, active_ptz_stops=[(0.0, 0.0, 1.0)])


def test_unknown_device_is_a_clear_failure(extractor):
    with pytest.raises(CaptureFailed, match="'nope' is not in devices.yaml"):
        extractor.extract_query("nope")


def test_broker_restart_mid_wait_is_survived(broker, tmp_path):
    spec = FleetSpec.model_validate({"deployments": [{"name": "site-r", "devices": [device("restart")]}]})
    with SimFleet(spec, broker_host=broker.host, broker_port=broker.port) as fleet:
        latches: list[MqttTelemetryLatch] = []

        def telemetry(dep, dev):
            latch = MqttResource(connect_timeout=10).latch(
                dep.mqtt.host, dep.mqtt.port, dep.topic(dev.id), dep.telemetry_fields
            )
            latches.append(latch)
            return latch

        restarted = threading.Event()

        def restart_when_connected() -> None:
            deadline = time.time() + 20
            while time.time() < deadline and not (latches and latches[0].connected):
                time.sleep(0.05)
            broker.restart(down_seconds=0.5)
            restarted.set()

        extractor = CaptureExtractor(
            Fleet.model_validate(fleet.devices_config()),
            telemetry_factory=telemetry,
            camera_factory=direct_camera,
            workdir=tmp_path,
        )
        thread = threading.Thread(target=restart_when_connected)
        thread.start()
        try:
            result = extractor.extract_query("restart", stabilize_time=2, timeout=60)
        finally:
            thread.join()
        assert restarted.is_set()
        assert latches[0].connections >= 2  # it reconnected after the restart
        frame = read_capture(result.folder).frames[0]
        assert_pose_equal(frame.telemetry, fleet.cameras["restart"].reported_pose())


# ----------------------------------------------------------------------------- active


def test_active_capture_visits_every_stop_and_returns_home(site, extractor):
    fleet, _ = site
    cam = fleet.cameras["active"]
    home = cam.reported_pose()
    stops = [(10.0, 0.0, 1.0), (-20.0, 5.0, 2.0), (0.0, 120.0, 1.0)]  # the last cannot be reached
    result = extractor.extract_query("active", stabilize_time=1, timeout=6, active_ptz_stops=stops)
    capture = read_capture(result.folder)
    assert capture.mode == CaptureMode.active
    assert [(f.telemetry.yaw, f.telemetry.pitch, f.telemetry.zoom) for f in capture.frames] == stops[:2]
    assert capture.frames[1].hfov_deg < capture.frames[0].hfov_deg  # zoomed in
    assert len(result.failed_stops) == 1
    failed = result.failed_stops[0]
    assert failed["stop"] == [0.0, 120.0, 1.0] and "did not reach the commanded pose" in failed["reason"]
    assert result.telemetry_summary["home"]["returned"] is True
    assert_pose_equal(cam.reported_pose(), home)


def test_active_capture_with_every_stop_failing_is_a_capture_failure(site, extractor):
    with pytest.raises(CaptureFailed, match=r"all 1 active stops failed: stop \[0.0, 100.0, 1.0\]"):
        extractor.extract_query("active", stabilize_time=1, timeout=2, active_ptz_stops=[(0.0, 100.0, 1.0)])


def test_active_capture_over_the_mqtt_command_topic(site, extractor):
    fleet, _ = site
    cam = fleet.cameras["mqtt-ptz"]
    home = cam.reported_pose()
    result = extractor.extract_query("mqtt-ptz", stabilize_time=1, timeout=20, active_ptz_stops=[(15.0, -2.0, 1.0)])
    frame = read_capture(result.folder).frames[0]
    assert (frame.telemetry.yaw, frame.telemetry.pitch) == (15.0, -2.0)
    assert_pose_equal(cam.reported_pose(), home)


def test_reference_capture_drives_the_grid_and_reports_progress(site, extractor):
    fleet, _ = site
    cam = fleet.cameras["active"]
    home = cam.reported_pose()
    progress: list[tuple[int, int]] = []
    result = extractor.capture_reference(
        "active", stabilize_time=1, timeout=20, progress=lambda done, total: progress.append((done, total))
    )
    capture = read_capture(result.folder)
    assert capture.kind == CaptureKind.reference and capture.mode == CaptureMode.reference
    assert [(f.telemetry.yaw, f.telemetry.pitch) for f in capture.frames] == [(-10.0, 0.0), (10.0, 0.0)]
    assert progress == [(1, 2), (2, 2)]
    assert_pose_equal(cam.reported_pose(), home)


# ----------------------------------------------------------------------------- camera client


def test_camera_client_snapshot_stream_move_and_status(site):
    fleet, config = site
    cam = fleet.cameras["media"]
    endpoint = config.find("media")[1].camera
    client = CameraResource(timeout_seconds=10).client("media", endpoint)
    image, jpeg = client.grab()
    assert image.shape == (360, 640, 3) and jpeg[:2] == b"\xff\xd8"
    streaming = CameraClient("media", endpoint.model_copy(update={"grab": "stream"}))
    frame, frame_jpeg = streaming.grab()
    assert frame.shape == (360, 640, 3) and frame_jpeg[:2] == b"\xff\xd8"
    # same view both ways (JPEG losses aside)
    assert np.mean(np.abs(frame.astype(float) - image.astype(float))) < 10
    assert client.status()["device_id"] == "media"
    client.move_absolute(31.0, 1.0, 1.0)
    assert cam.target() == (31.0, 1.0, 1.0)


def test_camera_client_errors_name_the_device_and_url(site, httpserver):
    fleet, config = site
    cam = fleet.cameras["media"]
    endpoint = config.find("media")[1].camera
    client = CameraClient("media", endpoint, timeout=0.5)
    cam.set_faults(corrupt_jpeg=True)
    try:
        with pytest.raises(CameraError, match=r"device media: snapshot cannot be decoded.*snapshot.jpg"):
            client.grab()
    finally:
        cam.clear_faults()
    cam.set_faults(slow_seconds=2.0)
    try:
        with pytest.raises(CameraError, match="did not answer snapshot within 0.5 s"):
            client.grab()
    finally:
        cam.clear_faults()

    httpserver.expect_request("/snapshot.jpg").respond_with_data("<html>login</html>", content_type="text/html")
    httpserver.expect_request("/ptz/absolute", method="POST").respond_with_data("nope", status=500)
    other = CameraClient("cam-x", CameraEndpoint(base_url=httpserver.url_for("/")))
    with pytest.raises(CameraError, match=r"device cam-x: snapshot is not a JPEG \(text/html"):
        other.grab()
    with pytest.raises(CameraError, match="device cam-x: PTZ move answered HTTP 500"):
        other.move_absolute(1.0, 2.0, 1.0)
    with pytest.raises(CameraError, match="ptz is 'none'"):
        CameraClient("cam-y", CameraEndpoint(base_url="http://127.0.0.1:9", ptz="none")).move_absolute(0, 0, 1)
    with pytest.raises(CameraError, match="port-forwarded base_url"):
        CameraClient("cam-k", CameraEndpoint(service="cam-k", port=80))


# ----------------------------------------------------------------------------- MQTT latch


def test_latch_parses_mapped_fields_and_rejects_garbage(shared_broker):
    fields = TelemetryFields(yaw="pan", pitch="ptz.tilt", timestamp="ts")
    latch = MqttTelemetryLatch(shared_broker.host, shared_broker.port, "calmon/t/x/telemetry", fields)
    good = latch.feed(json.dumps({"pan": 1.5, "ptz": {"tilt": "-2.25"}, "ts": 1_700_000_000_000}).encode())
    assert good is not None and (good.yaw, good.pitch, good.roll, good.zoom) == (1.5, -2.25, 0.0, 1.0)
    assert latch.device_clock_offset() is not None
    for junk in (
        b"\x00\xff",
        b'{"pan": 1',
        b"[]",
        b"",
        b'{"pan": "north", "ptz": {"tilt": 1}}',
        b'{"pan": NaN, "ptz": {"tilt": 1}}',
        b'{"pan": 1}',
        b'{"pan": true, "ptz": {"tilt": 1}}',
    ):
        assert latch.feed(junk) is None
    assert latch.garbage_count == 8
    assert latch.feed(json.dumps({"pan": 9.0, "ptz": {"tilt": 0}, "ts": 1_600_000_000}).encode()) is None
    assert latch.out_of_order_count == 1 and latch.received_count == 1
    assert latch.samples_since(-math.inf) == [good]
    assert latch.samples_since(good.timestamp) == []


def test_latch_waits_until_stable_and_times_out_on_silence(shared_broker):
    topic = "calmon/t/quiet/telemetry"
    with (
        MqttTelemetryLatch(shared_broker.host, shared_broker.port, topic) as latch,
        pytest.raises(CaptureFailed, match="no usable telemetry arrived.*topic calmon/t/quiet/telemetry"),
    ):
        TelemetryWatch(latch, 0.5, clock=latch.clock).wait_stable(latch.clock() + 1.0)


def test_latch_over_the_sim_and_its_ptz_command(site, shared_broker):
    fleet, config = site
    dep, dev = config.find("mqtt-ptz")
    with MqttTelemetryLatch(shared_broker.host, shared_broker.port, dep.topic(dev.id)) as latch:
        status = TelemetryWatch(latch, 0.5, clock=latch.clock).wait_stable(latch.clock() + 20)
        assert status.stable and latch.latest() is not None
        latch.publish_command(dep.command_topic(dev.id), 4.0, 0.0, 1.0)
        deadline = time.time() + 10
        while time.time() < deadline and fleet.cameras["mqtt-ptz"].target()[0] != 4.0:
            time.sleep(0.05)
        assert fleet.cameras["mqtt-ptz"].target()[0] == 4.0
        fleet.cameras["mqtt-ptz"].move_to(3.0, 0.0, 1.0)


def test_unreachable_broker_is_a_clear_failure():
    from calmon_sim.broker import free_port

    port = free_port()
    with pytest.raises(TelemetryUnavailable, match=f"MQTT broker 127.0.0.1:{port} not reachable within 1 s"):
        MqttTelemetryLatch("127.0.0.1", port, "x", connect_timeout=1.0).start()


# ----------------------------------------------------------------------------- fake clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1e-3)


class ScriptedTelemetry:
    """10 Hz samples of pose(t) on the fake clock, generated as time passes."""

    def __init__(self, clock: FakeClock, pose, silent_after: float = math.inf):
        self.clock, self.pose, self.silent_after = clock, pose, silent_after
        self.next_t = clock.now

    def start(self):
        return self

    def stop(self) -> None:
        pass

    def _produce(self) -> None:
        while self.next_t <= min(self.clock.now, self.silent_after):
            yaw, pitch = self.pose(self.next_t)
            self.samples.append(TelemetrySample(timestamp=self.next_t, yaw=yaw, pitch=pitch))
            self.next_t = round(self.next_t + 0.1, 6)

    samples: list[TelemetrySample]

    def latest(self):
        self._produce()
        return self.samples[-1] if self.samples else None

    def samples_since(self, t: float):
        self._produce()
        return [s for s in self.samples if s.timestamp > t]


class FakeCamera:
    def __init__(self, clock: FakeClock, on_grab=None, view=None):
        self.clock, self.on_grab, self.grabs = clock, on_grab, []
        self.view = view  # view(t) -> BGR image at fake time t; black frames when None

    def grab(self):
        self.grabs.append(self.clock.now)
        if self.on_grab:
            self.on_grab(len(self.grabs))
        image = self.view(self.clock.now) if self.view else np.zeros((360, 640, 3), np.uint8)
        self.clock.now += 0.2
        return image, encode_jpeg(image)

    def move_absolute(self, yaw, pitch, zoom):
        raise AssertionError("passive capture must not move the camera")


def fake_fleet() -> Fleet:
    return Fleet.model_validate(
        {
            "deployments": [
                {
                    "name": "lab",
                    "devices": [
                        {
                            "id": "fake",
                            "camera": {"base_url": "http://127.0.0.1:9"},
                            "intrinsics": {
                                "width": 640,
                                "height": 360,
                                "fx": 500.0,
                                "fy": 500.0,
                                "cx": 319.5,
                                "cy": 179.5,
                            },
                            "reference_grid": {"yaws": [0], "pitches": [0]},
                        }
                    ],
                }
            ]
        }
    )


def scripted_extractor(tmp_path, clock, source, camera, **kwargs) -> CaptureExtractor:
    """An extractor on the fake clock, reading `source` (a ScriptedTelemetry) and grabbing from `camera`.
    The fake camera's grey pictures look like infrared night to calmon_core.stacking: one snapshot per
    frame here, so the grabs counted are the motion checks' own."""
    kwargs.setdefault("low_light_frames", 1)
    source.samples = []
    return CaptureExtractor(
        fake_fleet(),
        telemetry_factory=lambda d, v: source,
        camera_factory=lambda d, v: camera,
        clock=clock,
        sleep=clock.sleep,
        workdir=tmp_path,
        **kwargs,
    )


def test_frame_is_discarded_when_the_camera_moves_right_after_the_grab(tmp_path):
    clock = FakeClock()
    moved_at: list[float] = []

    def pose(t):
        return (20.0, 0.0) if moved_at and t >= moved_at[0] else (10.0, 0.0)

    # grab 1 is the view once telemetry holds still, grab 2 the first frame: the head moves right after it
    camera = FakeCamera(clock, on_grab=lambda n: moved_at.append(clock.now + 0.1) if n == 2 else None)
    extractor = scripted_extractor(tmp_path, clock, ScriptedTelemetry(clock, pose), camera)
    result = extractor.extract_query("fake", stabilize_time=2, timeout=30)
    # per stillness a still view, then: the discarded frame; the kept one and its motion check
    assert len(camera.grabs) == 5
    assert len(result.telemetry_summary["discarded_frames"]) == 1
    frame = read_capture(result.folder).frames[0]
    assert frame.telemetry.yaw == 20.0
    assert (frame.fx, frame.cx) == (500.0, 319.5)  # explicit intrinsics pass through
    assert camera.grabs[3] - camera.grabs[1] >= 2.0  # waited a full stable period again


def test_telemetry_going_silent_fails_and_says_so(tmp_path):
    clock = FakeClock()
    source = ScriptedTelemetry(clock, lambda t: (10.0, 0.0), silent_after=clock.now + 0.5)
    extractor = scripted_extractor(tmp_path, clock, source, FakeCamera(clock))
    with pytest.raises(CaptureFailed, match=r"device fake: .*timeout.*no telemetry for .*silent for the last"):
        extractor.extract_query("fake", stabilize_time=2, timeout=10)
    assert clock.now - 1_000.0 >= 10.0


# ----------------------------------------------------------------------------- frozen telemetry


def texture(seed: int = 3, size=(360, 640)) -> np.ndarray:
    """A scene with structure at several scales, like a real view (not white noise)."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.uniform(0, 255, (size[0] // 8, size[1] // 8)), size[::-1], interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.uniform(0, 255, size), (0, 0), 1.5)
    grey = np.clip(0.6 * coarse + 0.4 * fine, 0, 255).astype(np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def shifted(image: np.ndarray, dx: float, dy: float = 0.0) -> np.ndarray:
    import cv2

    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def test_image_motion_measures_the_shift_in_full_frame_pixels():
    scene = texture()
    assert image_motion_px(scene, scene.copy()) == 0.0
    for dx, dy in ((0.3, 0.0), (1.0, 0.0), (3.0, 0.0), (0.0, -2.0), (25.0, 10.0)):
        assert image_motion_px(scene, shifted(scene, dx, dy)) == pytest.approx(math.hypot(dx, dy), abs=0.2)
    rng = np.random.default_rng(0)
    noisy = np.clip(scene + rng.normal(0, 3, scene.shape), 0, 255).astype(np.uint8)
    brighter = np.clip(scene.astype(int) + 25, 0, 255).astype(np.uint8)
    assert image_motion_px(scene, noisy) < 0.2  # sensor noise is not motion
    assert image_motion_px(scene, brighter) < 0.2  # nor is a change of exposure
    flat = np.full_like(scene, 90)
    luma = (360, 640, 1)  # noise in brightness, as sensors have it
    noise_a = np.clip(flat + rng.normal(0, 4, luma), 0, 255).astype(np.uint8)
    noise_b = np.clip(flat + rng.normal(0, 4, luma), 0, 255).astype(np.uint8)
    assert image_motion_px(noise_a, noise_b) == 0.0  # a featureless view: nothing to measure, not moved
    assert image_motion_px(scene, texture(seed=9)) == math.inf  # another view altogether
    assert image_motion_px(scene, scene[:180]) == math.inf


def frozen_extractor(tmp_path, clock, camera, **kwargs) -> CaptureExtractor:
    frozen = ScriptedTelemetry(clock, lambda t: (10.0, 0.0))  # always the same values
    return scripted_extractor(tmp_path, clock, frozen, camera, **kwargs)


def test_frozen_telemetry_while_the_image_moves_fails_and_says_so(tmp_path):
    clock = FakeClock()
    scene, t0 = texture(), clock.now
    camera = FakeCamera(clock, view=lambda t: shifted(scene, 8.0 * (t - t0)))  # panning 8 px/s
    extractor = frozen_extractor(tmp_path, clock, camera)
    with pytest.raises(CaptureFailed) as info:
        extractor.extract_query("fake", stabilize_time=1, timeout=6)
    message = str(info.value)
    assert "device fake: no frame could be kept within the 6 s timeout" in message
    assert "the image moved while telemetry stayed still (frozen telemetry?)" in message
    assert "more than 1 px allowed" in message
    assert len(camera.grabs) % 2 == 0  # every frame got exactly one check grab, no more


def test_frame_kept_once_the_image_is_still_and_the_discards_are_recorded(tmp_path):
    clock = FakeClock()
    scene, t0 = texture(), clock.now
    # the head pans for 3 s and stops; telemetry hung through the pan and reports the end pose after it
    camera = FakeCamera(clock, view=lambda t: shifted(scene, 8.0 * min(t - t0, 3.0)))
    lagging = ScriptedTelemetry(clock, lambda t: (10.0, 0.0) if t < t0 + 3.0 else (12.75, 0.0))
    result = scripted_extractor(tmp_path, clock, lagging, camera).extract_query("fake", stabilize_time=1, timeout=30)
    discarded = result.telemetry_summary["discarded_frames"]
    moved = [d for d in discarded if "the image moved while telemetry stayed still" in d]
    assert moved and all(d in moved or "telemetry moved during or right after the grab" in d for d in discarded)
    frame = read_capture(result.folder).frames[0]
    assert frame.captured_at.timestamp() >= t0 + 3.0 and frame.telemetry.yaw == 12.75
    # a still view per stillness (2); each frame of the pan is refused against it without a check
    # grab; the kept frame has its check grab
    assert len(camera.grabs) == 2 + len(discarded) + 2


def test_the_allowed_image_motion_is_configurable(tmp_path):
    clock = FakeClock()
    scene, t0 = texture(), clock.now
    camera = FakeCamera(clock, view=lambda t: shifted(scene, 1.0 * (t - t0)))  # a slow 1 px/s creep
    result = frozen_extractor(tmp_path, clock, camera, image_motion_px=5.0).extract_query(
        "fake", stabilize_time=1, timeout=10
    )
    assert result.telemetry_summary["discarded_frames"] == []
    with pytest.raises(CaptureFailed, match="more than 0.2 px allowed"):
        frozen_extractor(tmp_path, clock, FakeCamera(clock, view=camera.view), image_motion_px=0.2).extract_query(
            "fake", stabilize_time=1, timeout=5
        )


class MovingCamera(FakeCamera):
    """A head that moves to a commanded pose at `speed` °/s, seen through the same fake clock."""

    def __init__(self, clock: FakeClock, speed: float):
        super().__init__(clock)
        self.speed = speed
        self.moves: list[tuple[float, float, float]] = []  # (t, from yaw, to yaw)

    def yaw_at(self, t: float) -> float:
        yaw = 0.0
        for start, origin, target in self.moves:
            if start > t:
                break
            travel = self.speed * (t - start)
            yaw = target if travel >= abs(target - origin) else origin + math.copysign(travel, target - origin)
        return yaw

    def arrival(self, index: int) -> float:
        start, origin, target = self.moves[index]
        return start + abs(target - origin) / self.speed

    def move_absolute(self, yaw, pitch, zoom):
        now = self.clock.now
        self.moves.append((now, self.yaw_at(now), float(yaw)))


def test_back_home_means_stopped_at_home_not_passing_through_it(tmp_path):
    # within the arrival tolerance (0.5°) a head coming back at 0.2°/s is still moving for 2.5 s
    clock = FakeClock()
    camera = MovingCamera(clock, speed=0.2)
    telemetry = ScriptedTelemetry(clock, lambda t: (camera.yaw_at(t), 0.0))
    extractor = scripted_extractor(tmp_path, clock, telemetry, camera)
    result = extractor.extract_query("fake", stabilize_time=1, timeout=60, active_ptz_stops=[(1.0, 0.0, 1.0)])
    assert [target for _, _, target in camera.moves] == [1.0, 0.0]  # the stop, then home
    assert result.telemetry_summary["home"]["returned"] is True
    assert clock.now >= camera.arrival(1) + HOME_STILL_SECONDS  # home, and seen still there
    assert camera.yaw_at(clock.now) == 0.0


def test_stacking_averages_the_noise_away_and_refuses_frames_of_other_views():
    rng = np.random.default_rng(4)
    scene = np.tile(np.linspace(40, 200, 320, dtype=np.float32), (180, 1))[..., None].repeat(3, axis=2)
    shots = [np.clip(scene + rng.normal(0, 12, scene.shape), 0, 255).astype(np.uint8) for _ in range(8)]
    stacked = stack_frames(shots)
    assert stacked.dtype == np.uint8 and stacked.shape == scene.shape
    single_error = np.std(shots[0].astype(np.float32) - scene)
    assert np.std(stacked.astype(np.float32) - scene) < 0.45 * single_error  # 1/sqrt(8) = 0.35
    with pytest.raises(ValueError, match="snapshot 1 is"):
        stack_frames([shots[0], shots[1][:90]])
    with pytest.raises(ValueError, match="no snapshots"):
        stack_frames([])
    grey = cv2.cvtColor(shots[0], cv2.COLOR_BGR2GRAY)
    assert burst_size(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)) == LOW_LIGHT_FRAMES  # infrared: monochrome
    colour = np.dstack([shots[0][..., 0], np.full((180, 320), 120, np.uint8), shots[0][..., 2]])
    assert burst_size(colour) == 1 and burst_size(grey, low_light_frames=1) == 1
