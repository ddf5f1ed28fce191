"""kubectl client: a fake kubectl on PATH for port-forwards (real TCP relay, deaths on demand), and
the real /usr/bin/kubectl for context and kubeconfig handling."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from calmon_core.config import Deployment, Device
from resources.kubectl import Kubectl, KubectlError, KubectlResource, device_endpoints

REAL_KUBECTL = "/usr/bin/kubectl"


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = f"camera says {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def camera_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def echo_server():
    """A raw TCP echo server (stands in for the MQTT broker's port)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(
                target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(4096), b"")], daemon=True
            ).start()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def services(fake_kubectl, monkeypatch, camera_server, echo_server):
    mapping = {"cameras/cam-10:80": camera_server, "cameras/mosquitto:1883": echo_server}
    monkeypatch.setenv("FAKE_KUBECTL_SERVICES", json.dumps(mapping))
    return mapping


def calls() -> list[list[str]]:
    path = Path(os.environ["FAKE_KUBECTL_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def fetch(port: int, path: str = "/snapshot.jpg") -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read().decode()


def wait_until_not_alive(forward) -> None:
    for _ in range(250):
        if not forward.alive():  # polls (and reaps) our own child
            return
        time.sleep(0.02)
    raise AssertionError(f"port-forward {forward.pid} still running")


def wait_dead(pid: int) -> None:
    """A process that is not our child (or already reaped) has gone."""
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still running")


def test_port_forward_relays_a_real_tcp_connection(services):
    kubectl = Kubectl("fake-cluster")
    with kubectl.port_forward("cameras", "cam-10", 80) as forward:
        assert forward.alive()
        assert fetch(forward.local_port) == "camera says /snapshot.jpg"
        pid = forward.pid
    wait_dead(pid)  # torn down on exit
    (argv,) = calls()
    assert argv[:2] == ["--context", "fake-cluster"]
    assert argv[2:] == ["port-forward", "-n", "cameras", "svc/cam-10", ":80", "--address", "127.0.0.1"]


def test_forward_torn_down_when_the_check_fails(services):
    with (
        pytest.raises(RuntimeError, match="check failed"),
        Kubectl("fake-cluster").port_forward("cameras", "cam-10", 80) as forward,
    ):
        pid = forward.pid
        raise RuntimeError("check failed")
    wait_dead(pid)


def test_dead_forward_restarts_once_then_fails_clearly(services):
    with Kubectl("fake-cluster").port_forward("cameras", "cam-10", 80) as forward:
        first_pid = forward.pid
        os.kill(first_pid, signal.SIGUSR1)  # the pod connection is lost
        wait_until_not_alive(forward)
        assert not forward.alive()
        port = forward.ensure_alive()
        assert forward.alive() and forward.pid != first_pid and forward.restarts == 1
        assert fetch(port, "/again") == "camera says /again"
        assert forward.ensure_alive() == port  # alive: nothing restarted
        os.kill(forward.pid, signal.SIGUSR1)
        wait_until_not_alive(forward)
        with pytest.raises(KubectlError, match="died again after a restart.*lost connection to pod"):
            forward.ensure_alive()


def test_a_dead_forward_is_reported_in_its_own_last_words_even_when_they_come_late(services, monkeypatch):
    # the exit is seen before kubectl's last words are read (a loaded machine's reader thread)
    monkeypatch.setenv("FAKE_KUBECTL_LAST_WORDS_LATE", "0.5")
    with Kubectl("fake-cluster").port_forward("cameras", "cam-10", 80) as forward:
        os.kill(forward.pid, signal.SIGUSR1)
        wait_until_not_alive(forward)
        forward.ensure_alive()
        os.kill(forward.pid, signal.SIGUSR1)
        wait_until_not_alive(forward)
        with pytest.raises(KubectlError, match="died again after a restart: E1125 .*lost connection to pod"):
            forward.ensure_alive()


def test_forward_that_dies_on_a_timer_is_restarted(services, monkeypatch):
    monkeypatch.setenv("FAKE_KUBECTL_DIE_AFTER", "0.3")
    with Kubectl("fake-cluster").port_forward("cameras", "mosquitto", 1883) as forward:
        wait_until_not_alive(forward)
        monkeypatch.delenv("FAKE_KUBECTL_DIE_AFTER")
        port = forward.ensure_alive()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"\x10ping")
            assert conn.recv(16) == b"\x10ping"


def test_unknown_context_is_a_clear_error(services):
    with (
        pytest.raises(KubectlError, match="unknown kube context 'prod-eu'.*kube_context in devices.yaml"),
        Kubectl("prod-eu").port_forward("cameras", "cam-10", 80),
    ):
        pass


def test_missing_service_is_a_clear_error(services):
    with (
        pytest.raises(KubectlError, match="service 'cam-99' not found in namespace 'cameras'"),
        Kubectl("fake-cluster").port_forward("cameras", "cam-99", 80),
    ):
        pass


def test_kubectl_not_installed(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KubectlError, match="kubectl not installed"):
        Kubectl("any").run("get", "pods")
    with pytest.raises(KubectlError, match="kubectl not installed"), Kubectl("any").port_forward("ns", "svc", 80):
        pass


def test_every_command_names_its_context(fake_kubectl):
    Kubectl("fake-cluster").run("get", "pods")
    Kubectl("other-cluster", kubeconfig="/tmp/k.yaml").run("get", "svc", "-n", "x")
    assert calls() == [
        ["--context", "fake-cluster", "get", "pods"],
        ["--context", "other-cluster", "--kubeconfig", "/tmp/k.yaml", "get", "svc", "-n", "x"],
    ]


# --------------------------------------------------------------------------- device endpoints

DEVICE = {
    "id": "cam-10",
    "camera": {"service": "cam-10", "port": 80},
    "intrinsics": {"width": 640, "height": 360, "hfov_by_zoom": {1.0: 60.0}},
    "reference_grid": {"yaws": [0.0], "pitches": [0.0]},
}


def test_device_endpoints_via_kubectl(services):
    deployment = Deployment(
        name="city-north",
        access="kubectl",
        kube_context="fake-cluster",
        namespace="cameras",
        mqtt={"service": "mosquitto", "port": 1883},
    )
    device = Device.model_validate(DEVICE)
    with device_endpoints(deployment, device) as endpoints:
        assert endpoints.mqtt_host == "127.0.0.1"
        assert len(endpoints.forwards) == 2
        assert fetch(int(endpoints.camera_base_url.rsplit(":", 1)[1])) == "camera says /snapshot.jpg"
        with socket.create_connection((endpoints.mqtt_host, endpoints.mqtt_port), timeout=5) as conn:
            conn.sendall(b"mqtt")
            assert conn.recv(16) == b"mqtt"
        os.kill(endpoints.mqtt_forward.pid, signal.SIGUSR1)  # the broker's forward dies mid-check
        wait_until_not_alive(endpoints.mqtt_forward)
        endpoints.ensure_alive()
        assert endpoints.mqtt_forward.restarts == 1 and endpoints.camera_forward.restarts == 0
        assert endpoints.mqtt_port == endpoints.mqtt_forward.local_port  # the (possibly new) port
        with socket.create_connection((endpoints.mqtt_host, endpoints.mqtt_port), timeout=5) as conn:
            conn.sendall(b"again")
            assert conn.recv(16) == b"again"
        pids = [f.pid for f in endpoints.forwards]
    for pid in pids:
        wait_dead(pid)


def test_device_endpoints_close_the_first_forward_when_the_second_fails(services, monkeypatch):
    deployment = Deployment(
        name="city-north",
        access="kubectl",
        kube_context="fake-cluster",
        namespace="cameras",
        mqtt={"service": "no-broker", "port": 1883},
    )
    with (
        pytest.raises(KubectlError, match="service 'no-broker' not found"),
        device_endpoints(deployment, Device.model_validate(DEVICE)),
    ):
        pass
    camera_forward = next(c for c in calls() if "svc/cam-10" in c)
    assert camera_forward  # it was started ...
    out = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", "fake_kubectl/kubectl"], capture_output=True, text=True
    )
    assert out.stdout.split() == []  # ... and none of our kubectl children is left running


def test_device_endpoints_direct():
    deployment = Deployment(name="sim", mqtt={"host": "10.0.0.5", "port": 1884})
    device = Device.model_validate({**DEVICE, "camera": {"base_url": "http://10.0.0.9:8001"}})
    with device_endpoints(deployment, device) as endpoints:
        assert (endpoints.camera_base_url, endpoints.mqtt_host, endpoints.mqtt_port) == (
            "http://10.0.0.9:8001",
            "10.0.0.5",
            1884,
        )
        assert endpoints.forwards == []


# --------------------------------------------------------------------------- real kubectl

needs_kubectl = pytest.mark.skipif(not Path(REAL_KUBECTL).exists(), reason="no /usr/bin/kubectl")


@pytest.fixture
def kubeconfig(tmp_path) -> Path:
    def cluster(name: str, port: int) -> dict:
        return {"name": name, "cluster": {"server": f"https://127.0.0.1:{port}"}}

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "site-a",
        "clusters": [cluster("a", 1), cluster("b", 2)],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [
            {"name": "site-a", "context": {"cluster": "a", "user": "u"}},
            {"name": "site-b", "context": {"cluster": "b", "user": "u", "namespace": "cams"}},
        ],
    }
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@needs_kubectl
def test_real_kubectl_uses_the_given_context_without_switching(kubeconfig):
    kubectl = Kubectl("site-b", kubeconfig=str(kubeconfig), executable=REAL_KUBECTL)
    out = kubectl.run("config", "view", "--minify", "-o", "jsonpath={.contexts[0].name} {.clusters[0].cluster.server}")
    assert out.stdout == "site-b https://127.0.0.1:2"
    assert yaml.safe_load(kubeconfig.read_text())["current-context"] == "site-a"


@needs_kubectl
def test_real_kubectl_unknown_context(kubeconfig):
    kubectl = Kubectl("site-z", kubeconfig=str(kubeconfig), executable=REAL_KUBECTL)
    with pytest.raises(KubectlError, match=f"unknown kube context 'site-z' \\(kubeconfig {kubeconfig}\\)"):
        kubectl.run("get", "pods")
    with (
        pytest.raises(KubectlError, match="unknown kube context 'site-z'"),
        kubectl.port_forward("cams", "cam-10", 80, ready_timeout=10),
    ):
        pass


@needs_kubectl
def test_real_kubectl_unreachable_cluster_fails_port_forward_cleanly(kubeconfig):
    kubectl = Kubectl("site-a", kubeconfig=str(kubeconfig), executable=REAL_KUBECTL)
    with (
        pytest.raises(KubectlError, match="port-forward to svc/cam-10:80 in namespace 'cams'"),
        kubectl.port_forward("cams", "cam-10", 80, ready_timeout=10),
    ):
        pass


def test_resource_client(fake_kubectl):
    resource = KubectlResource(kubeconfig="/etc/calmon/kubeconfig")
    client = resource.client("fake-cluster")
    assert (client.context, client.kubeconfig, client.executable) == (
        "fake-cluster",
        "/etc/calmon/kubeconfig",
        "kubectl",
    )
    assert shutil.which(client.executable).startswith(str(fake_kubectl))
