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
from typing import TypeVar
from urllib.parse import urlsplit

import cv2
import dagster as dg
import numpy as np
import requests

from calmon_core.capture_format import CaptureFormatError, decode_image, encode_jpeg
from calmon_core.capture_ports import CameraFault
from calmon_core.config import CameraEndpoint

MqttCommand = Callable[[float, float, float], None]
T = TypeVar("T")


class CameraError(CameraFault):
    """A camera that cannot be used right now; the message names the device and the URL."""


class CameraRefused(CameraError):
    """Nothing listens at the camera's address: the camera is offline, or its port-forward died."""


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


class CameraClient:
    """One camera. `base_url` overrides the endpoint's (a port-forward in kubectl mode).

    `base_url` may be a callable, read at every request, and `reresolve` a callable that makes it
    point somewhere new: a port-forward can die mid-check and come back on another local port, so
    a refused connection calls `reresolve` once and retries at the address it then gives.
    """

    def __init__(
        self,
        device_id: str,
        endpoint: CameraEndpoint,
        base_url: str | Callable[[], str | None] | None = None,
        timeout: float = 10.0,
        mqtt_command: MqttCommand | None = None,
        reresolve: Callable[[], object] | None = None,
    ):
        self.device_id = device_id
        self.endpoint = endpoint
        self.timeout = timeout
        self.mqtt_command = mqtt_command
        self.reresolve = reresolve
        self.reresolved = 0  # refused connections answered by a new address (restarted forwards)
        self._base_url = base_url
        if self._override() is None and endpoint.base_url is None and endpoint.service:
            raise CameraError(
                f"device {device_id}: camera is a Kubernetes service "
                f"({endpoint.service}:{endpoint.port}); it needs a port-forwarded base_url"
            )
        self._session = requests.Session()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CameraClient({self.device_id!r}, {self.grab_url!r})"

    # ------------------------------------------------------------------ addresses, read per request

    def _override(self) -> str | None:
        return self._base_url() if callable(self._base_url) else self._base_url

    @property
    def base_url(self) -> str | None:
        return self._override() or self.endpoint.base_url

    def _url(self, path: str, explicit: str | None) -> str | None:
        override = self._override()
        if override:  # a port-forward replaces the host: the paths apply to it
            return _join(override, path)
        base = self.endpoint.base_url
        return explicit or (_join(base, path) if base else None)

    @property
    def snapshot_url(self) -> str | None:
        return self._url(self.endpoint.snapshot_path, self.endpoint.snapshot_url)

    @property
    def stream_url(self) -> str | None:
        return self._url(self.endpoint.stream_path, self.endpoint.stream_url)

    @property
    def ptz_url(self) -> str | None:
        base = self.base_url
        return _join(base, self.endpoint.ptz_path) if base else None

    @property
    def status_url(self) -> str | None:
        base = self.base_url
        return _join(base, "/status") if base else None

    @property
    def grab_url(self) -> str | None:
        return self.stream_url if self.endpoint.grab == "stream" else self.snapshot_url

    def _fail(self, what: str, url: str | None, kind: type[CameraError] = CameraError) -> CameraError:
        return kind(f"device {self.device_id}: {what} ({url})")

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """`attempt()`; after a refused connection once more, if `reresolve` moved the address."""
        try:
            return attempt()
        except CameraRefused:
            if self.reresolve is None:
                raise
            before = self.base_url
            self.reresolve()
            if self.base_url == before:
                raise
            self.reresolved += 1
        return attempt()

    # ------------------------------------------------------------------ reachability

    def probe(self) -> None:
        """Fail fast when nothing listens at the camera's address (TCP connect, no request)."""
        self._retrying(self._probe)

    def _probe(self) -> None:
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
            raise self._fail("camera offline: connection refused", url, CameraRefused) from None
        except TimeoutError:
            raise self._fail(
                f"camera offline: no answer to a connection within {min(self.timeout, 5.0):g} s", url
            ) from None
        except OSError as exc:
            raise self._fail(f"camera unreachable: {exc}", url) from None

    # ------------------------------------------------------------------ HTTP

    def _request(
        self, method: str, url_of: Callable[[], str | None], what: str, **kwargs
    ) -> tuple[requests.Response, str]:
        """The response and the URL that gave it; `url_of` is read again for the retry."""
        return self._retrying(lambda: self._send(method, url_of(), what, **kwargs))

    def _send(self, method: str, url: str | None, what: str, **kwargs) -> tuple[requests.Response, str]:
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
            if "refused" in text.lower():
                raise self._fail(f"camera offline: connection refused ({what})", url, CameraRefused) from None
            raise self._fail(f"camera offline: {text} ({what})", url) from None
        except requests.exceptions.Timeout:
            raise self._fail(f"camera did not answer {what} within {self.timeout:g} s", url) from None
        except requests.exceptions.RequestException as exc:
            raise self._fail(f"{what} failed: {exc}", url) from None
        if response.status_code != 200:
            body = response.text[:200].strip()
            raise self._fail(f"{what} answered HTTP {response.status_code}: {body}", url)
        return response, url

    def grab(self) -> tuple[np.ndarray, bytes]:
        """The current frame: decoded BGR image and JPEG bytes (the camera's own when it sent JPEG)."""
        if self.endpoint.grab == "stream":
            return self._retrying(self._grab_stream)
        return self._grab_snapshot()

    def _grab_snapshot(self) -> tuple[np.ndarray, bytes]:
        response, url = self._request("GET", lambda: self.snapshot_url, "snapshot")
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
        capture = cv2.VideoCapture(
            url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        )
        try:
            if not capture.isOpened():
                self._probe()  # says "offline" (CameraRefused) when nothing listens
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
                raise CameraError(
                    f"device {self.device_id}: camera.ptz is mqtt but no MQTT command publisher was given"
                )
            self.mqtt_command(yaw, pitch, zoom)
            return
        if ptz == "none":
            raise CameraError(f"device {self.device_id}: camera.ptz is 'none'; it cannot be moved")
        self._request(
            "POST",
            lambda: self.ptz_url,
            "PTZ move",
            json={"yaw": float(yaw), "pitch": float(pitch), "zoom": float(zoom)},
        )

    def status(self) -> dict:
        response, url = self._request("GET", lambda: self.status_url, "status")
        try:
            body = response.json()
        except ValueError:
            raise self._fail("status is not JSON", url) from None
        if not isinstance(body, dict):
            raise self._fail("status is not a JSON object", url)
        return body

    def close(self) -> None:
        self._session.close()


class CameraResource(dg.ConfigurableResource):
    """Builds camera clients for devices.yaml endpoints (or port-forwarded ones)."""

    timeout_seconds: float = 10.0

    def client(
        self,
        device_id: str,
        endpoint: CameraEndpoint,
        base_url: str | Callable[[], str | None] | None = None,
        reresolve: Callable[[], object] | None = None,
    ) -> CameraClient:
        return CameraClient(device_id, endpoint, base_url=base_url, timeout=self.timeout_seconds, reresolve=reresolve)
