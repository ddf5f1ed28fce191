"""Camera drivers against simulated cameras speaking each vendor's dialect over real HTTP/SOAP,
with authentication on: ONVIF through onvif-zeep-async and its own WSDLs, VAPIX and ISAPI with
HTTP Digest, and calmon's JSON API."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from calmon_core.config import CameraEndpoint
from calmon_sim.camera import SimCamera
from calmon_sim.fleet import camera_section
from calmon_sim.fleet_spec import SimDeviceSpec
from resources.cameras import CameraAuthError, CameraError, OnvifCamera, camera_client

PASSWORD = "s3cret-Cam-Pw!"
PROTOCOLS = ["http", "vapix", "isapi", "onvif"]


def sim_camera(protocol: str, **extra) -> SimCamera:
    spec = SimDeviceSpec.model_validate(
        {
            "id": f"cam-{protocol}",
            "resolution": [320, 180],
            "hfov_by_zoom": {1.0: 60.0},
            "slew_speed_deg_s": 400.0,
            "zoom_speed_per_s": 200.0,
            "protocol": protocol,
            "username": "calmon",
            "password": PASSWORD,
            **extra,
        }
    )
    return SimCamera(spec, "site").start()


def endpoint_for(cam: SimCamera, **changes) -> CameraEndpoint:
    section = camera_section(cam.spec, cam.base_url)
    section["password"] = PASSWORD
    section.update(changes)
    return CameraEndpoint.model_validate(section)


def settle(cam: SimCamera) -> None:
    deadline = time.time() + 5
    while cam.is_moving() and time.time() < deadline:
        time.sleep(0.02)


@pytest.fixture
def cameras():
    started: list[SimCamera] = []

    def make(protocol: str, **extra) -> SimCamera:
        cam = sim_camera(protocol, **extra)
        started.append(cam)
        return cam

    yield make
    for cam in started:
        cam.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_driver_moves_reads_and_grabs(cameras, protocol):
    cam = cameras(protocol)
    client = camera_client(cam.device_id, endpoint_for(cam), timeout=10)
    try:
        client.probe()
        client.move_absolute(-120.0, 12.5, 3.0)  # vendor units, signs and zoom scales all matter
        yaw, pitch, zoom = cam.target()
        assert yaw == pytest.approx(-120.0, abs=0.05)
        assert pitch == pytest.approx(12.5, abs=0.05)
        assert zoom == pytest.approx(3.0, abs=0.01)
        settle(cam)
        read = client.read_position()
        assert read[0] == pytest.approx(-120.0, abs=0.05)
        assert read[1] == pytest.approx(12.5, abs=0.05)
        assert read[2] == pytest.approx(3.0, abs=0.01)
        image, jpeg = client.grab()
        assert image.shape == (180, 320, 3) and jpeg[:2] == b"\xff\xd8"
    finally:
        client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_password_is_a_clear_error_without_retries(cameras, protocol):
    cam = cameras(protocol)
    client = camera_client(cam.device_id, endpoint_for(cam, password="not-the-password"), timeout=10)
    try:
        with pytest.raises(CameraAuthError) as caught:
            client.probe()
            client.move_absolute(10.0, 0.0, 1.0)
        message = str(caught.value)
        assert message.startswith(f"device {cam.device_id}: camera refused the credentials")
        assert PASSWORD not in message and "not-the-password" not in message
        assert cam.target()[0] == pytest.approx(0.0)  # it did not move
    finally:
        client.close()
    server = cam._http._server
    refused = server.onvif.refused if protocol == "onvif" else server.digest.refused
    assert 1 <= refused <= 2  # one attempt (Digest: the challenge round and the refused answer), no storm


@pytest.mark.parametrize("protocol", ["vapix", "isapi"])
def test_missing_credentials_say_so(cameras, protocol):
    cam = cameras(protocol)
    client = camera_client(cam.device_id, endpoint_for(cam, username=None, password=None))
    with pytest.raises(CameraAuthError, match="asks for credentials \\(HTTP 401\\) but devices.yaml sets no"):
        client.move_absolute(10.0, 0.0, 1.0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_camera_that_refuses_absolute_move(cameras, protocol):
    if protocol == "http":
        pytest.skip("calmon's JSON API has no such fault")
    cam = cameras(protocol, refuse_absolute_move=True)
    client = camera_client(cam.device_id, endpoint_for(cam))
    try:
        with pytest.raises(CameraError, match=f"device {cam.device_id}: camera refused .*(AbsoluteMove|PTZ move)"):
            client.move_absolute(10.0, 0.0, 1.0)
    finally:
        client.close()


def test_onvif_generic_space_needs_configured_ranges(cameras):
    cam = cameras("onvif", onvif_degrees=False)
    endpoint = endpoint_for(cam)
    assert endpoint.onvif.pan_range == (-180.0, 180.0)  # what the fleet's installer writes
    unconfigured = endpoint.model_copy(update={"onvif": endpoint.onvif.model_copy(update={"pan_range": None})})
    client = camera_client(cam.device_id, unconfigured)
    try:
        with pytest.raises(CameraError, match="offers only the generic -1...1 pan/tilt space.*camera.onvif.pan_range"):
            client.move_absolute(30.0, 0.0, 1.0)
    finally:
        client.close()
    client = camera_client(cam.device_id, endpoint)
    try:
        client.move_absolute(135.0, -20.0, 1.0)
        assert cam.target()[:2] == pytest.approx((135.0, -20.0), abs=1e-3)
        settle(cam)
        assert client.read_position()[:2] == pytest.approx((135.0, -20.0), abs=1e-3)
    finally:
        client.close()


# A fresh interpreter: in this one pytest's log handlers sit on the root logger, and basicConfig
# does nothing on a root logger that has handlers.
TALK_ONVIF_THEN_LOG = textwrap.dedent(
    """
    import logging, sys
    sys.path.insert(0, sys.argv[1])
    from tests.test_cameras import endpoint_for, sim_camera
    from resources.cameras import camera_client

    cam = sim_camera("onvif")
    client = camera_client(cam.device_id, endpoint_for(cam), timeout=10)
    try:
        client.probe()
        client.read_position()
    finally:
        client.close()
        cam.stop()
    logging.getLogger("some.library").info("an INFO line nobody configured a handler for")
    print("root level", logging.getLevelName(logging.getLogger().level), "handlers", len(logging.getLogger().handlers))
    """
)


def test_talking_onvif_leaves_logging_as_it_was():
    """onvif-zeep-async configures the root logger at INFO when imported: undone, or every INFO line
    of every library (the MQTT broker's, its state machine's) reaches the user's terminal after the first ONVIF
    camera is used."""
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", TALK_ONVIF_THEN_LOG, str(repo)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "root level WARNING handlers 0" in done.stdout
    assert "an INFO line nobody configured" not in done.stderr


def test_onvif_camera_clock_skew(cameras):
    """WS-Security tokens are checked against the camera's clock, an hour off here."""
    cam = cameras("onvif", clock_skew_s=3600.0)
    endpoint = endpoint_for(cam)
    client = camera_client(cam.device_id, endpoint)
    try:
        client.move_absolute(45.0, 0.0, 1.0)
        assert cam.target()[0] == pytest.approx(45.0, abs=1e-3)
    finally:
        client.close()
    naive = endpoint.model_copy(update={"onvif": endpoint.onvif.model_copy(update={"adjust_time": False})})
    client = camera_client(cam.device_id, naive)
    try:
        with pytest.raises(CameraAuthError, match="camera refused the credentials"):
            client.probe()
    finally:
        client.close()


def test_onvif_addresses_are_rewritten_to_the_forwarded_one(cameras):
    """In kubectl mode the camera advertises its in-cluster address; calmon reaches it elsewhere."""
    cam = cameras("onvif")
    reachable = cam.base_url
    cam.base_url = "http://10.96.0.17:80"  # what the pod thinks it is; unreachable from here
    endpoint = endpoint_for(cam, base_url=None, service="cam-onvif", port=80)
    client = OnvifCamera(cam.device_id, endpoint, base_url=lambda: reachable, timeout=5)
    try:
        client.move_absolute(-30.0, 4.0, 1.0)
        assert client.snapshot_url == f"{reachable}/onvif/snapshot.jpg"
        image, _ = client.grab()
        assert image.shape[:2] == (180, 320)
        assert cam.target()[:2] == pytest.approx((-30.0, 4.0), abs=1e-3)
    finally:
        client.close()


def test_credentials_never_inside_a_url():
    with pytest.raises(ValueError, match="credentials inside a URL are not allowed"):
        CameraEndpoint(base_url="http://admin:hunter2@10.0.0.5/", protocol="vapix")


def test_kubectl_forwards_every_port_the_onvif_driver_needs(cameras, fake_kubectl, monkeypatch):
    """ONVIF on its own port (8000) beside HTTP (80): both forwarded, each restartable, and the
    addresses the camera hands out rewritten to the forwarded ones."""
    import json
    import os
    import signal

    from calmon_core.config import Deployment, Device
    from resources.kubectl import device_endpoints

    cam = cameras("onvif")
    cam.base_url = "http://cam-onvif.cameras.svc:8000"  # what it advertises inside the cluster
    monkeypatch.setenv(
        "FAKE_KUBECTL_SERVICES", json.dumps({"cameras/cam-onvif:80": cam.port, "cameras/cam-onvif:8000": cam.port})
    )
    camera = {key: value for key, value in camera_section(cam.spec, "").items() if key != "base_url"}
    camera.update(service="cam-onvif", port=80, password=PASSWORD)
    camera["onvif"]["port"] = 8000
    deployment = Deployment(name="k8s", access="kubectl", kube_context="fake-cluster", namespace="cameras")
    device = Device.model_validate(
        {
            "id": cam.device_id,
            "camera": camera,
            "intrinsics": {"width": 320, "height": 180, "hfov_by_zoom": {1.0: 60.0}},
            "reference_grid": {"yaws": [0], "pitches": [0]},
        }
    )
    with device_endpoints(deployment, device) as endpoints:
        assert sorted(endpoints.camera_ports()) == [80, 8000]
        client = OnvifCamera(
            cam.device_id,
            device.camera,
            base_url=lambda: endpoints.camera_base_url,
            reresolve=endpoints.ensure_alive,
            port_map=endpoints.camera_ports,
        )
        try:
            client.move_absolute(15.0, 2.0, 1.0)
            assert cam.target()[:2] == pytest.approx((15.0, 2.0), abs=1e-3)
            onvif_forward = endpoints.camera_port_forwards[8000]
            assert client.device_service_url == f"http://127.0.0.1:{onvif_forward.local_port}/onvif/device_service"
            os.kill(onvif_forward.pid, signal.SIGUSR1)  # the ONVIF port's forward dies mid-check
            for _ in range(250):
                if not onvif_forward.alive():
                    break
                time.sleep(0.02)
            endpoints.ensure_alive()
            assert onvif_forward.restarts == 1 and endpoints.camera_forward.restarts == 0
            client.move_absolute(-15.0, 1.0, 1.0)  # reconnects at the restarted forward's port
            assert cam.target()[:2] == pytest.approx((-15.0, 1.0), abs=1e-3)
            assert client.snapshot_url.startswith(f"http://127.0.0.1:{onvif_forward.local_port}/")
            image, _ = client.grab()
            assert image.shape[:2] == (180, 320)
        finally:
            client.close()


def test_onvif_options_are_validated_with_key_paths(tmp_path):
    from calmon_core.config import ConfigError, load_fleet

    path = tmp_path / "devices.yaml"
    path.write_text(
        "deployments:\n  - name: d\n    devices:\n      - id: cam\n        camera:\n"
        "          base_url: http://10.0.0.9\n          protocol: onvif\n"
        "          onvif: {use_degrees: false, zoom_range: [5, 1]}\n"
        "        intrinsics: {width: 640, height: 360, hfov_by_zoom: {1.0: 60.0}}\n"
        "        reference_grid: {yaws: [0], pitches: [0]}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_fleet(path)
    text = str(caught.value)
    assert "deployments[0].devices[0].camera.onvif.zoom_range: Value error, must be [low, high]" in text
