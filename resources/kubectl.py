"""kubectl: commands pinned to one context, port-forwards to a deployment's services.

Every command gets `--context` (and `--kubeconfig` when given): the global current-context is never
read or changed, so parallel checks on different clusters cannot race.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import dagster as dg

from calmon_core.config import CameraEndpoint, Deployment, Device

_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")
# how long an exited kubectl's pipes may take to reach end of file: its last words are read by a
# thread, which can lag the exit itself on a loaded machine
LAST_WORDS_SECONDS = 2.0
_UNKNOWN_CONTEXT = re.compile(r'context "?([^"\s]*)"? (?:not found|does not exist)|context was not found')
_MISSING = re.compile(r'(services|pods|namespaces) "([^"]+)" not found')
_LIVE_FORWARDS: weakref.WeakSet[PortForward] = weakref.WeakSet()


class KubectlError(Exception):
    """kubectl missing, an unknown context, a missing service, a port-forward that died."""


@atexit.register
def _close_forgotten_forwards() -> None:
    # a crash between start and teardown must not leave kubectl processes behind
    for forward in list(_LIVE_FORWARDS):
        forward.close()


class Kubectl:
    def __init__(self, context: str, kubeconfig: str | None = None, executable: str = "kubectl"):
        if not context:
            raise KubectlError("a kube context is required (kube_context in devices.yaml)")
        self.context = context
        self.kubeconfig = kubeconfig
        self.executable = executable

    def command(self, *args: str) -> list[str]:
        resolved = shutil.which(self.executable)
        if resolved is None:
            raise KubectlError(
                f"kubectl not installed: {self.executable!r} is not an executable on PATH "
                "(install kubectl or set the kubectl resource's executable)"
            )
        base = [resolved, "--context", self.context]
        if self.kubeconfig:
            base += ["--kubeconfig", os.path.expanduser(self.kubeconfig)]
        return base + list(args)

    def explain(self, stderr: str, what: str, namespace: str | None = None) -> KubectlError:
        """A KubectlError that says what went wrong in the user's terms."""
        where = f"context {self.context!r}" + (f", kubeconfig {self.kubeconfig}" if self.kubeconfig else "")
        text = stderr.strip()
        if _UNKNOWN_CONTEXT.search(text):
            return KubectlError(
                f"{what}: unknown kube context {self.context!r} "
                f"({'kubeconfig ' + self.kubeconfig if self.kubeconfig else 'default kubeconfig'}); "
                f"check kube_context in devices.yaml. kubectl said: {text}"
            )
        missing = _MISSING.search(text)
        if missing:
            kind = missing.group(1).rstrip("s")
            ns = f" in namespace {namespace!r}" if namespace and kind != "namespace" else ""
            return KubectlError(f"{what}: {kind} {missing.group(2)!r} not found{ns} ({where}). kubectl said: {text}")
        return KubectlError(f"{what} failed ({where}): {text or 'no output'}")

    def run(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """Run kubectl with this context; raises KubectlError on a non-zero exit when check."""
        command = self.command(*args)
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise KubectlError(
                f"kubectl {' '.join(args)} timed out after {timeout:g} s (context {self.context!r})"
            ) from exc
        if check and result.returncode != 0:
            raise self.explain(result.stderr, f"kubectl {' '.join(args)}")
        return result

    @contextmanager
    def port_forward(
        self, namespace: str, service: str, remote_port: int, ready_timeout: float = 15
    ) -> Iterator[PortForward]:
        """`kubectl port-forward -n NS svc/NAME :PORT` for the duration of the block."""
        forward = PortForward(self, namespace, service, remote_port, ready_timeout)
        try:
            forward.start()
            yield forward
        finally:
            forward.close()


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(eq=False)
class PortForward:
    kubectl: Kubectl
    namespace: str
    service: str
    remote_port: int
    ready_timeout: float = 15
    local_port: int = 0
    restarts: int = 0
    _process: subprocess.Popen | None = field(default=None, repr=False)
    _stderr: deque = field(default_factory=lambda: deque(maxlen=50), repr=False)
    _readers: list[threading.Thread] = field(default_factory=list, repr=False)

    @property
    def target(self) -> str:
        return f"svc/{self.service}:{self.remote_port} in namespace {self.namespace!r}"

    def start(self) -> int:
        command = self.kubectl.command(
            "port-forward",
            "-n",
            self.namespace,
            f"svc/{self.service}",
            f":{self.remote_port}",
            "--address",
            "127.0.0.1",
        )
        self._stderr.clear()
        # own process group: teardown reaches kubectl's children too, and Ctrl-C goes to us first
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._process = process
        _LIVE_FORWARDS.add(self)
        found: list[int] = []
        announced = threading.Event()

        def read_stdout() -> None:
            assert process.stdout is not None
            for line in process.stdout:  # drained until exit so kubectl never blocks on a full pipe
                match = _FORWARDING.search(line)
                if match and not found:
                    found.append(int(match.group(1)))
                    announced.set()
            announced.set()

        def read_stderr() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                self._stderr.append(line.rstrip())

        self._readers = [
            threading.Thread(target=reader, daemon=True, name=f"port-forward-{self.service}")
            for reader in (read_stdout, read_stderr)
        ]
        for reader in self._readers:
            reader.start()

        deadline = time.monotonic() + self.ready_timeout
        announced.wait(self.ready_timeout)
        if not found:
            self._fail("did not report a local port" if process.poll() is None else "exited")
        self.local_port = found[0]
        while not _port_open(self.local_port):
            if process.poll() is not None:
                self._fail("exited")
            if time.monotonic() > deadline:
                self._fail(f"local port {self.local_port} did not accept connections")
            time.sleep(0.05)
        return self.local_port

    def _fail(self, what: str) -> None:
        self._terminate()
        raise self.kubectl.explain(
            "\n".join(self._stderr) or what, f"port-forward to {self.target} {what}", self.namespace
        )

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ensure_alive(self) -> int:
        """The local port to use now; restarts the forward ONCE per forward if it died."""
        if self.alive():
            return self.local_port
        if self.restarts >= 1:
            self._drain()
            raise KubectlError(
                f"port-forward to {self.target} (context {self.kubectl.context!r}) died again after "
                f"a restart: {' / '.join(self._stderr) or 'no output'}"
            )
        self.restarts += 1
        self._terminate()
        return self.start()

    def _terminate(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self._drain()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def _drain(self) -> None:
        """Wait (bounded) until the readers have seen the end of an exited kubectl's output: what it
        said last is in self._stderr, and no reader is left on a stream about to be closed."""
        deadline = time.monotonic() + LAST_WORDS_SECONDS
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self._terminate()
        _LIVE_FORWARDS.discard(self)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None


@dataclass
class DeviceEndpoints:
    camera_base_url: str | None  # None: use the camera's own snapshot_url / stream_url
    mqtt_host: str
    mqtt_port: int
    forwards: list[PortForward] = field(default_factory=list)
    camera_forward: PortForward | None = None
    mqtt_forward: PortForward | None = None
    # the camera's other ports a driver needs (ONVIF on its own port, RTSP): remote -> forward
    camera_port_forwards: dict[int, PortForward] = field(default_factory=dict)
    # the camera client (check thread) and the MQTT latch (paho's thread) may both find a dead forward
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def ensure_alive(self) -> DeviceEndpoints:
        """Restart (once each) forwards that died mid-check and update the addresses in place."""
        with self._lock:
            if self.camera_forward is not None:
                self.camera_base_url = f"http://127.0.0.1:{self.camera_forward.ensure_alive()}"
            if self.mqtt_forward is not None:
                self.mqtt_port = self.mqtt_forward.ensure_alive()
            for forward in self.camera_port_forwards.values():
                forward.ensure_alive()
        return self

    def camera_ports(self) -> dict[int, int]:
        """The camera's forwarded ports, remote -> local (the HTTP port included)."""
        out = {remote: forward.local_port for remote, forward in self.camera_port_forwards.items()}
        if self.camera_forward is not None:
            out[self.camera_forward.remote_port] = self.camera_forward.local_port
        return out

    def mqtt_address(self) -> tuple[str, int]:
        """The broker's address after restarting a dead forward (the MQTT latch's reresolve)."""
        self.ensure_alive()
        return self.mqtt_host, self.mqtt_port


def camera_extra_ports(camera: CameraEndpoint) -> list[int]:
    """Ports of the camera's service besides camera.port that its driver needs."""
    ports = []
    if camera.protocol == "onvif" and camera.onvif.port and camera.onvif.port != camera.port:
        ports.append(camera.onvif.port)
    if camera.grab == "stream" and camera.stream_url and urlsplit(camera.stream_url).scheme == "rtsp":
        ports.append(urlsplit(camera.stream_url).port or 554)
    return sorted(set(ports) - {camera.port})


@contextmanager
def device_endpoints(
    deployment: Deployment,
    device: Device,
    kubectl_executable: str = "kubectl",
    default_kubeconfig: str | None = None,
) -> Iterator[DeviceEndpoints]:
    """Where to reach one device's camera and its deployment's MQTT broker for one check.

    direct: the URLs and host from devices.yaml. kubectl: port-forwards to the camera's and the
    broker's services in the deployment's namespace and context (deployment.kubeconfig, else
    default_kubeconfig), closed when the block ends, even when the check fails.
    """
    camera = device.camera
    mqtt = deployment.mqtt
    if deployment.access != "kubectl":
        yield DeviceEndpoints(camera.base_url, mqtt.host or "127.0.0.1", mqtt.port)
        return
    kubectl = Kubectl(deployment.kube_context or "", deployment.kubeconfig or default_kubeconfig, kubectl_executable)
    with ExitStack() as stack:
        endpoints = DeviceEndpoints(camera.base_url, mqtt.host or "127.0.0.1", mqtt.port)
        if camera.service and camera.port:
            forward = stack.enter_context(kubectl.port_forward(deployment.namespace, camera.service, camera.port))
            endpoints.forwards.append(forward)
            endpoints.camera_forward = forward
            endpoints.camera_base_url = f"http://127.0.0.1:{forward.local_port}"
            for port in camera_extra_ports(camera):
                extra = stack.enter_context(kubectl.port_forward(deployment.namespace, camera.service, port))
                endpoints.forwards.append(extra)
                endpoints.camera_port_forwards[port] = extra
        if mqtt.service:
            forward = stack.enter_context(kubectl.port_forward(deployment.namespace, mqtt.service, mqtt.port))
            endpoints.forwards.append(forward)
            endpoints.mqtt_forward = forward
            endpoints.mqtt_host, endpoints.mqtt_port = "127.0.0.1", forward.local_port
        yield endpoints


class KubectlResource(dg.ConfigurableResource):
    """The kubectl executable (and an optional default kubeconfig) used for kubectl deployments."""

    executable: str = "kubectl"
    kubeconfig: str | None = None

    def client(self, context: str, kubeconfig: str | None = None) -> Kubectl:
        return Kubectl(context, kubeconfig or self.kubeconfig, self.executable)
