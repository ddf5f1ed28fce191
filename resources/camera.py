"""Camera client for the endpoints in devices.yaml: snapshots, streams and absolute PTZ moves.

HTTP goes through `requests` with a timeout on every call; MJPEG/RTSP streams through
cv2.VideoCapture (FFmpeg) with open/read timeouts. Every failure is a CameraError naming the device
and the URL: offline (connection refused), no answer in time, HTTP error, an answer that is not a
JPEG, or bytes no decoder accepts.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import cv2
import dagster as dg
import numpy as np
import requests

from calmon_core.capture_format import CaptureFormatError, decode_image, encode_jpeg
from calmon_core.config import CameraEndpoint
from calmon_core.extraction import CameraFault

MqttCommand = Callable[[float, float, float], None]


class CameraError(CameraFault):
    """A camera that cannot be used right now; the message names the device and the URL."""


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


class CameraClient:
    """One camera. `base_url` overrides the endpoint's (a port-forward in kubectl mode)."""

    def __init__(self, device_id: str, endpoint: CameraEndpoint, base_url: str | None = None,
                 timeout: float = 10.0, mqtt_command: MqttCommand | None = None):
        self.device_id = device_id
        self.endpoint = endpoint
        self.timeout = timeout
        self.mqtt_command = mqtt_command
        base = base_url or endpoint.base_url
        if base_url is None and endpoint.base_url is None and endpoint.service:
            raise CameraError(f"device {device_id}: camera is a Kubernetes service "
                              f"({endpoint.service}:{endpoint.port}); it needs a port-forwarded base_url")
        self.base_url = base
        if base_url:  # a port-forward replaces the host: the paths apply to it
            self.snapshot_url: str | None = _join(base_url, endpoint.snapshot_path)
            self.stream_url: str | None = _join(base_url, endpoint.stream_path)
        else:
            self.snapshot_url = endpoint.snapshot_url or (_join(base, endpoint.snapshot_path) if base else None)
            self.stream_url = endpoint.stream_url or (_join(base, endpoint.stream_path) if base else None)
        self.ptz_url = _join(base, endpoint.ptz_path) if base else None
        self.status_url = _join(base, "/status") if base else None
        self._session = requests.Session()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CameraClient({self.device_id!r}, {self.grab_url!r})"

    @property
    def grab_url(self) -> str | None:
        return self.stream_url if self.endpoint.grab == "stream" else self.snapshot_url

    def _fail(self, what: str, url: str | None) -> CameraError:
        return CameraError(f"device {self.device_id}: {what} ({url})")

    # ------------------------------------------------------------------ reachability

    def probe(self) -> None:
        """Fail fast when nothing listens at the camera's address (TCP connect, no request)."""
        url = self.grab_url or self.ptz_url
        if not url:
            raise CameraError(f"device {self.device_id}: no snapshot, stream or base URL configured")
        parts = urlsplit(url)
        default_port = {"https": 443, "rtsp": 554}.get(parts.scheme, 80)
        host, port = parts.hostname or "127.0.0.1", parts.port or default_port
        try:
            with socket.create_connection((host, port), timeout=min(self.timeout, 5.0)):
                return
        except ConnectionRefusedError:
            raise self._fail("camera offline: connection refused", url) from None
        except TimeoutError:
            raise self._fail(f"camera offline: no answer to a connection within {min(self.timeout, 5.0):g} s",
                             url) from None
        except OSError as exc:
            raise self._fail(f"camera unreachable: {exc}", url) from None

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, url: str | None, what: str, **kwargs) -> requests.Response:
        if not url:
            raise CameraError(f"device {self.device_id}: no URL configured for {what}")
        try:
            response = self._session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            text = str(exc)
            if isinstance(exc, requests.exceptions.ConnectTimeout):
                raise self._fail(f"camera offline: no connection within {self.timeout:g} s ({what})", url) from None
            if "Read timed out" in text:
                raise self._fail(f"camera did not answer {what} within {self.timeout:g} s", url) from None
            reason = "connection refused" if "refused" in text.lower() else text
            raise self._fail(f"camera offline: {reason} ({what})", url) from None
        except requests.exceptions.Timeout:
            raise self._fail(f"camera did not answer {what} within {self.timeout:g} s", url) from None
        except requests.exceptions.RequestException as exc:
            raise self._fail(f"{what} failed: {exc}", url) from None
        if response.status_code != 200:
            body = response.text[:200].strip()
            raise self._fail(f"{what} answered HTTP {response.status_code}: {body}", url)
        return response

    def grab(self) -> tuple[np.ndarray, bytes]:
        """The current frame: decoded BGR image and JPEG bytes (the camera's own when it sent JPEG)."""
        if self.endpoint.grab == "stream":
            return self._grab_stream()
        return self._grab_snapshot()

    def _grab_snapshot(self) -> tuple[np.ndarray, bytes]:
        url = self.snapshot_url
        response = self._request("GET", url, "snapshot")
        data = response.content
        if not data.startswith(b"\xff\xd8"):
            kind = response.headers.get("Content-Type", "unknown type")
            raise self._fail(f"snapshot is not a JPEG ({kind}, {len(data)} bytes, starts {data[:8]!r})", url)
        try:
            image = decode_image(data, f"device {self.device_id} snapshot")
        except CaptureFormatError as exc:
            raise self._fail(f"snapshot cannot be decoded: {exc}", url) from None
        return image, data

    def _grab_stream(self) -> tuple[np.ndarray, bytes]:
        url = self.stream_url
        if not url:
            raise CameraError(f"device {self.device_id}: grab: stream but no stream URL configured")
        ms = int(self.timeout * 1000)
        capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        try:
            if not capture.isOpened():
                self.probe()  # says "offline" when nothing listens
                raise self._fail("stream cannot be opened (not MJPEG/RTSP, or no frames)", url)
            ok, image = capture.read()
            if not ok or image is None or image.size == 0:
                raise self._fail("stream gave no decodable frame", url)
        finally:
            capture.release()
        return image, encode_jpeg(image, 95)

    def move_absolute(self, yaw: float, pitch: float, zoom: float) -> None:
        """Absolute PTZ move; returns once the camera accepted the command (it slews afterwards)."""
        ptz = self.endpoint.ptz
        if ptz == "mqtt":
            if self.mqtt_command is None:
                raise CameraError(f"device {self.device_id}: camera.ptz is mqtt but no MQTT command "
                                  "publisher was given")
            self.mqtt_command(yaw, pitch, zoom)
            return
        if ptz == "none":
            raise CameraError(f"device {self.device_id}: camera.ptz is 'none'; it cannot be moved")
        self._request("POST", self.ptz_url, "PTZ move",
                      json={"yaw": float(yaw), "pitch": float(pitch), "zoom": float(zoom)})

    def status(self) -> dict:
        response = self._request("GET", self.status_url, "status")
        try:
            body = response.json()
        except ValueError:
            raise self._fail("status is not JSON", self.status_url) from None
        if not isinstance(body, dict):
            raise self._fail("status is not a JSON object", self.status_url)
        return body

    def close(self) -> None:
        self._session.close()


class CameraResource(dg.ConfigurableResource):
    """Builds camera clients for devices.yaml endpoints (or port-forwarded ones)."""

    timeout_seconds: float = 10.0

    def client(self, device_id: str, endpoint: CameraEndpoint, base_url: str | None = None) -> CameraClient:
        return CameraClient(device_id, endpoint, base_url=base_url, timeout=self.timeout_seconds)
