"""The simulated site's control service: faults of any camera, reachable while the camera is offline."""

from __future__ import annotations

import requests

from calmon_sim.fleet import SimFleet
from calmon_sim.fleet_spec import FleetSpec
from tests.test_sim_fleet import device


def test_an_offline_camera_is_brought_back_over_http(shared_broker):
    spec = FleetSpec.model_validate({"deployments": [{"name": "d", "devices": [device("c1"), device("c2")]}]})
    with SimFleet(spec, broker_host=shared_broker.host, broker_port=shared_broker.port) as fleet:
        cam = fleet.cameras["c1"]
        assert requests.post(f"{cam.base_url}/faults", json={"offline": True}, timeout=5).json()["faults"] == {
            "offline": True
        }
        try:
            requests.get(f"{cam.base_url}/status", timeout=2)
            raise AssertionError("an offline camera answered")
        except requests.ConnectionError:
            pass  # its own /faults is gone with it
        listing = requests.get(f"{fleet.control_url}/cameras", timeout=5).json()
        assert {c["id"]: c["faults"] for c in listing["cameras"]} == {"c1": {"offline": True}, "c2": {}}
        reply = requests.post(f"{fleet.control_url}/cameras/c1/faults", json={"clear": True}, timeout=5)
        assert reply.status_code == 200 and reply.json()["faults"] == {}
        assert requests.get(f"{cam.base_url}/status", timeout=5).json()["faults"] == {}


def test_the_control_service_refuses_unknown_cameras_and_faults(shared_broker):
    spec = FleetSpec.model_validate({"deployments": [{"name": "d", "devices": [device("c1")]}]})
    with SimFleet(spec, broker_host=shared_broker.host, broker_port=shared_broker.port) as fleet:
        missing = requests.post(f"{fleet.control_url}/cameras/nope/faults", json={"offline": True}, timeout=5)
        assert missing.status_code == 404 and "nope" in missing.json()["error"]
        bad = requests.post(f"{fleet.control_url}/cameras/c1/faults", json={"melted": True}, timeout=5)
        assert bad.status_code == 400 and "melted" in bad.json()["error"]
        assert fleet.cameras["c1"].faults == {}


def test_calmon_sim_prints_where_its_control_service_is(shared_broker, tmp_path):
    import re
    import signal
    import subprocess
    import sys
    import time

    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(
        "deployments:\n  - name: d\n    devices:\n      - {id: c1, resolution: [320, 180]}\n", encoding="utf-8"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "calmon_cli.main",
            "sim",
            "--fleet",
            str(fleet_file),
            "--broker",
            f"{shared_broker.host}:{shared_broker.port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("running"):
                break
        found = [m for m in (re.search(r"fleet control: (http://\S+)/cameras", x) for x in lines) if m]
        assert found, "".join(lines)
        listing = requests.get(f"{found[0].group(1)}/cameras", timeout=5).json()
        assert [c["id"] for c in listing["cameras"]] == ["c1"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
