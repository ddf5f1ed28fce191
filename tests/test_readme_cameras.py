"""Every camera example in the README's "Connecting your cameras", against a simulated camera
speaking that protocol with the example's credentials: loaded by calmon's own config loader,
then moved, read back and grabbed through the driver the example selects."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from calmon_core.config import load_fleet
from calmon_sim.camera import SimCamera
from calmon_sim.fleet_spec import SimDeviceSpec
from resources.cameras import camera_client

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = dict(re.findall(r"```yaml\n# example: (\w+)\n(.*?)```", README.read_text(), re.S))


def test_every_protocol_has_an_example():
    assert sorted(EXAMPLES) == ["http", "isapi", "onvif", "vapix"]


@pytest.mark.parametrize("protocol", sorted(EXAMPLES))
def test_readme_example_drives_a_camera(protocol, tmp_path, monkeypatch):
    section = yaml.safe_load(EXAMPLES[protocol])
    camera = section["camera"]
    username = camera.get("username")
    env = re.fullmatch(r"\$\{(\w+)\}", camera.get("password", "")) if username else None
    spec = SimDeviceSpec.model_validate(
        {
            "id": f"readme-{protocol}",
            "resolution": [320, 180],
            "hfov_by_zoom": {1.0: 60.0},  # zoom limits 1...30, as the examples say
            "slew_speed_deg_s": 500.0,
            "protocol": protocol,
            "username": username,
            "password": "readme-Pw-42" if username else None,
            "onvif_degrees": False,  # the harder case: the generic space with the example's ranges
        }
    )
    cam = SimCamera(spec, "readme").start()
    try:
        if env:
            monkeypatch.setenv(env.group(1), "readme-Pw-42")
        device = {
            "id": spec.id,
            "camera": {**camera, "base_url": cam.base_url},
            "intrinsics": {"width": 320, "height": 180, "hfov_by_zoom": {1.0: 60.0}},
            "reference_grid": {"yaws": [0], "pitches": [0]},
        }
        if "telemetry" in section:
            device["telemetry"] = section["telemetry"]
        path = tmp_path / "devices.yaml"
        path.write_text(yaml.safe_dump({"deployments": [{"name": "readme", "devices": [device]}]}))
        loaded = load_fleet(path).find(spec.id)[1]
        client = camera_client(spec.id, loaded.camera)
        try:
            client.probe()
            client.move_absolute(-75.0, 8.0, 2.0)
            assert cam.target() == pytest.approx((-75.0, 8.0, 2.0), abs=0.01)
            deadline = time.time() + 5
            while cam.is_moving() and time.time() < deadline:
                time.sleep(0.02)
            assert client.read_position() == pytest.approx((-75.0, 8.0, 2.0), abs=0.01)
            assert client.grab()[0].shape == (180, 320, 3)
        finally:
            client.close()
    finally:
        cam.stop()
