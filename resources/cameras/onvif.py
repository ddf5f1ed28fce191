"""`protocol: onvif`: ONVIF Profile S/T cameras through onvif-zeep-async (zeep, the WSDLs it ships).

Connect: GetSystemDateAndTime (unauthenticated) gives the camera clock's offset, so the
WS-Security UsernameToken digests are stamped on the camera's clock; GetServices gives the service
addresses (XAddrs); Media GetProfiles picks the profile with a PTZ configuration (or
camera.onvif.profile); PTZ GetNode tells the spaces the node offers.

Move: AbsoluteMove in SphericalPositionSpaceDegrees when the node offers it (and
camera.onvif.use_degrees), else in the generic pan/tilt space with camera.onvif.pan_range and
tilt_range (degrees at the space's ends, linear in between); zoom in the generic zoom space mapped
onto camera.onvif.zoom_range. Position: GetStatus, read back through the same mapping (by the
space its answer names). Frames: GetSnapshotUri, fetched over HTTP with Digest auth.

In kubectl mode (a port-forwarded base_url) every address the camera hands out (XAddrs, the
snapshot URI) is rewritten to the forwarded host and port: the camera only knows its own address.

The client library is asyncio; each camera runs its own event loop on a daemon thread and the
sync methods wait on it with the client's timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from calmon_core.conventions import wrap_deg
from resources.cameras.base import CameraAuthError, CameraClient, CameraError, CameraRefused

DEGREES_SPACE = "http://www.onvif.org/ver10/tptz/PanTiltSpaces/SphericalPositionSpaceDegrees"
GENERIC_PAN_TILT_SPACE = "http://www.onvif.org/ver10/tptz/PanTiltSpaces/PositionGenericSpace"
GENERIC_ZOOM_SPACE = "http://www.onvif.org/ver10/tptz/ZoomSpaces/PositionGenericSpace"
DEVICE_SERVICE_PATH = "/onvif/device_service"
T = TypeVar("T")
_import_lock = threading.Lock()


def onvif_library() -> Any:
    """The onvif package, imported without its side effect on logging: onvif-zeep-async calls
    logging.basicConfig(level=INFO) when imported, which would print every library's INFO lines
    (the MQTT broker's, its state machine's) on the stderr of any process that ever talked ONVIF."""
    with _import_lock:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        import onvif

        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    return onvif


@dataclass
class _Range:
    low: float
    high: float

    def to_space(self, value: float, space: _Range) -> float:
        return space.low + (value - self.low) / (self.high - self.low) * (space.high - space.low)

    def contains(self, value: float) -> bool:
        return self.low - 1e-9 <= value <= self.high + 1e-9


@dataclass
class _Node:
    profile: str
    pan_tilt_space: str  # URI used for moves
    pan_space: _Range
    tilt_space: _Range
    zoom_space_uri: str | None
    zoom_space: _Range | None


def _space_range(space: Any, axis: str) -> _Range:
    limits = getattr(space, axis)
    return _Range(float(limits.Min), float(limits.Max))


class OnvifCamera(CameraClient):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._camera: Any = None
        self._connected_to: tuple[str, int] | None = None
        self._node: _Node | None = None
        self._snapshot_uri: str | None = None
        self._ptz: Any = None
        self._connect_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OnvifCamera({self.device_id!r}, {self.device_service_url!r})"

    # ------------------------------------------------------------------ addresses

    def _host_port(self) -> tuple[str, int]:
        base = self.base_url
        if not base:
            raise CameraError(f"device {self.device_id}: protocol onvif needs camera.base_url")
        parts = urlsplit(base)
        forwarded = self._override() is not None
        port = parts.port or 80
        onvif_port = self.endpoint.onvif.port
        if onvif_port and not forwarded:
            port = onvif_port
        elif onvif_port and onvif_port != self.endpoint.port:
            local = self.forwarded_port(onvif_port)
            if local is None:
                raise CameraError(f"device {self.device_id}: ONVIF port {onvif_port} is not port-forwarded")
            port = local
        return parts.hostname or "127.0.0.1", port

    @property
    def device_service_url(self) -> str | None:
        try:
            host, port = self._host_port()
        except CameraError:
            return None
        return f"http://{host}:{port}{DEVICE_SERVICE_PATH}"

    @property
    def snapshot_url(self) -> str | None:
        if self.endpoint.snapshot_url and not self._override():
            return self.endpoint.snapshot_url
        self._ensure_connected()
        return self._snapshot_uri

    @property
    def ptz_url(self) -> str | None:
        return self.device_service_url

    @property
    def grab_url(self) -> str | None:
        # probe() must not need a SOAP round trip: the device service address is enough
        return self.device_service_url if self.endpoint.grab == "snapshot" else self.stream_url

    # ------------------------------------------------------------------ the event loop

    def _run(self, coroutine: Coroutine[Any, Any, T], what: str) -> T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name=f"onvif-{self.device_id}", daemon=True)
            self._thread.start()
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(self.timeout + 5.0)
        except TimeoutError:
            future.cancel()
            raise CameraError(
                f"device {self.device_id}: camera did not answer ONVIF {what} within {self.timeout:g} s "
                f"({self.device_service_url})"
            ) from None
        except CameraError:
            raise
        except Exception as exc:  # noqa: BLE001 - every library/transport failure becomes a CameraError
            raise self._translate(exc, what) from None

    def _translate(self, exc: Exception, what: str) -> CameraError:
        import aiohttp
        import zeep.exceptions

        url = self.device_service_url
        text = str(exc)
        if isinstance(exc, zeep.exceptions.Fault):
            subcodes = " ".join(str(getattr(c, "localname", c)) for c in (exc.subcodes or []))
            detail = f"{exc.message or ''} {subcodes}".strip()
            if "NotAuthorized" in detail or "not authorized" in detail.lower():
                return self._fail(f"camera refused the credentials (ONVIF {what}: {detail})", url, CameraAuthError)
            return self._fail(f"camera refused ONVIF {what}: {detail}", url)
        if isinstance(exc, zeep.exceptions.TransportError):
            if exc.status_code in (401, 403):
                return self._fail(
                    f"camera refused the credentials (HTTP {exc.status_code}, ONVIF {what})", url, CameraAuthError
                )
            return self._fail(f"ONVIF {what} answered HTTP {exc.status_code}", url)
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, (aiohttp.ClientConnectorError, ConnectionRefusedError)):
                return self._fail(f"camera offline: connection refused (ONVIF {what})", url, CameraRefused)
            if isinstance(cause, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
                return self._fail(f"camera did not answer ONVIF {what} within {self.timeout:g} s", url)
            cause = cause.__cause__ or cause.__context__
        if "Cannot connect" in text or "Connection refused" in text:
            return self._fail(f"camera offline: connection refused (ONVIF {what})", url, CameraRefused)
        return self._fail(f"ONVIF {what} failed: {type(exc).__name__}: {text[:200]}", url)

    # ------------------------------------------------------------------ connecting

    def _ensure_connected(self) -> None:
        with self._connect_lock:
            address = self._host_port()
            if self._camera is not None and self._connected_to == address:
                return
            if self._camera is not None:
                self._run(self._camera.close(), "close")
                self._camera = None
            self._retrying_connect(address)

    def _retrying_connect(self, address: tuple[str, int]) -> None:
        def attempt() -> None:
            here = self._host_port()
            self._run(self._connect(*here), "connect (GetSystemDateAndTime, GetServices, GetProfiles, GetNode)")
            self._connected_to = here

        self._retrying(attempt)

    async def _connect(self, host: str, port: int) -> None:
        ONVIFCamera = onvif_library().ONVIFCamera  # noqa: N806 - the library's class

        options = self.endpoint.onvif
        password = self.endpoint.password.get_secret_value() if self.endpoint.password else None
        camera = ONVIFCamera(
            host,
            port,
            self.endpoint.username,
            password,
            no_cache=True,
            adjust_time=options.adjust_time,
            # a port-forward: what the camera says about its own address is not reachable from here
            nat_override=self._override() is not None,
        )
        try:
            await asyncio.wait_for(camera.update_xaddrs(), self.timeout)
            media = await camera.create_media_service()
            profiles = await asyncio.wait_for(media.GetProfiles(), self.timeout)
            profile = self._pick_profile(profiles)
            uri = await asyncio.wait_for(media.GetSnapshotUri({"ProfileToken": profile.token}), self.timeout)
            ptz = await camera.create_ptz_service()
            node = await asyncio.wait_for(ptz.GetNode({"NodeToken": profile.PTZConfiguration.NodeToken}), self.timeout)
        except BaseException:
            await camera.close()
            raise
        from onvif.util import strip_user_pass_url  # onvif_library() above imported the package

        snapshot = camera.rewrite_url(str(uri.Uri)) if uri is not None and uri.Uri else None
        self._snapshot_uri = strip_user_pass_url(snapshot) if snapshot else None
        self._node = self._read_node(profile.token, node)
        self._camera, self._ptz = camera, ptz

    def _pick_profile(self, profiles: Any) -> Any:
        wanted = self.endpoint.onvif.profile
        tokens = [p.token for p in profiles or []]
        for profile in profiles or []:
            if wanted is not None and profile.token != wanted:
                continue
            if profile.PTZConfiguration is not None:
                return profile
        if wanted is not None:
            raise CameraError(
                f"device {self.device_id}: camera.onvif.profile {wanted!r} is not a media profile with PTZ "
                f"(profiles: {tokens})"
            )
        raise CameraError(f"device {self.device_id}: no ONVIF media profile has a PTZ configuration ({tokens})")

    def _read_node(self, profile: str, node: Any) -> _Node:
        spaces = node.SupportedPTZSpaces
        pan_tilt = {s.URI: s for s in (spaces.AbsolutePanTiltPositionSpace or [])}
        zooms = {s.URI: s for s in (spaces.AbsoluteZoomPositionSpace or [])}
        options = self.endpoint.onvif
        zoom_uri = GENERIC_ZOOM_SPACE if GENERIC_ZOOM_SPACE in zooms else next(iter(zooms), None)
        zoom_space = _space_range(zooms[zoom_uri], "XRange") if zoom_uri else None
        if options.use_degrees and DEGREES_SPACE in pan_tilt:
            space = pan_tilt[DEGREES_SPACE]
            return _Node(
                profile,
                DEGREES_SPACE,
                _space_range(space, "XRange"),
                _space_range(space, "YRange"),
                zoom_uri,
                zoom_space,
            )
        if GENERIC_PAN_TILT_SPACE not in pan_tilt:
            raise CameraError(
                f"device {self.device_id}: the PTZ node offers no absolute pan/tilt space calmon can use "
                f"({sorted(pan_tilt)})"
            )
        space = pan_tilt[GENERIC_PAN_TILT_SPACE]
        return _Node(
            profile,
            GENERIC_PAN_TILT_SPACE,
            _space_range(space, "XRange"),
            _space_range(space, "YRange"),
            zoom_uri,
            zoom_space,
        )

    def _generic_ranges(self) -> tuple[_Range, _Range]:
        options = self.endpoint.onvif
        if options.pan_range is None or options.tilt_range is None:
            raise CameraError(
                f"device {self.device_id}: the camera's PTZ node offers only the generic -1...1 pan/tilt "
                "space (no SphericalPositionSpaceDegrees), so calmon cannot know what a degree is: set "
                "camera.onvif.pan_range and camera.onvif.tilt_range in devices.yaml (the degrees at the "
                "space's ends, e.g. [-180, 180] and [-90, 90])"
            )
        return _Range(*options.pan_range), _Range(*options.tilt_range)

    def _zoom_range(self) -> _Range:
        if self.endpoint.onvif.zoom_range is None:
            raise CameraError(
                f"device {self.device_id}: ONVIF zoom is a generic 0...1 position: set camera.onvif.zoom_range "
                "in devices.yaml (the zoom factors at its ends, e.g. [1, 30])"
            )
        return _Range(*self.endpoint.onvif.zoom_range)

    # ------------------------------------------------------------------ the driver

    def probe(self) -> None:
        super().probe()
        self._ensure_connected()

    def _move(self, yaw: float, pitch: float, zoom: float) -> None:
        self._ensure_connected()
        node = self._node
        assert node is not None
        if node.pan_tilt_space == DEGREES_SPACE:
            x, y = wrap_deg(yaw), pitch
            if not (node.pan_space.contains(x) and node.tilt_space.contains(y)):
                raise CameraError(
                    f"device {self.device_id}: pose yaw {yaw:g} pitch {pitch:g} is outside the camera's "
                    f"range (pan {node.pan_space.low:g}...{node.pan_space.high:g}, "
                    f"tilt {node.tilt_space.low:g}...{node.tilt_space.high:g})"
                )
        else:
            pan, tilt = self._generic_ranges()
            x = wrap_deg(yaw)
            if not pan.contains(x) and pan.contains(x + 360.0):
                x += 360.0
            if not (pan.contains(x) and tilt.contains(pitch)):
                raise CameraError(
                    f"device {self.device_id}: pose yaw {yaw:g} pitch {pitch:g} is outside camera.onvif "
                    f"pan_range {[pan.low, pan.high]} / tilt_range {[tilt.low, tilt.high]}"
                )
            x, y = pan.to_space(x, node.pan_space), tilt.to_space(pitch, node.tilt_space)
        position: dict[str, Any] = {"PanTilt": {"x": x, "y": y, "space": node.pan_tilt_space}}
        if node.zoom_space is not None and node.zoom_space_uri is not None:
            zooms = self._zoom_range()
            if not zooms.contains(zoom):
                raise CameraError(
                    f"device {self.device_id}: zoom {zoom:g} is outside camera.onvif.zoom_range "
                    f"{[zooms.low, zooms.high]}"
                )
            position["Zoom"] = {"x": zooms.to_space(zoom, node.zoom_space), "space": node.zoom_space_uri}
        request = {"ProfileToken": node.profile, "Position": position}
        self._run(self._ptz.AbsoluteMove(request), "AbsoluteMove")

    def read_position(self) -> tuple[float, float, float]:
        self._ensure_connected()
        node = self._node
        assert node is not None
        status = self._run(self._ptz.GetStatus({"ProfileToken": node.profile}), "GetStatus")
        position = getattr(status, "Position", None)
        pan_tilt = getattr(position, "PanTilt", None)
        if pan_tilt is None:
            raise CameraError(f"device {self.device_id}: ONVIF GetStatus has no pan/tilt position")
        space = pan_tilt.space or node.pan_tilt_space
        if space == DEGREES_SPACE:
            yaw, pitch = float(pan_tilt.x), float(pan_tilt.y)
        elif space == GENERIC_PAN_TILT_SPACE:
            pan, tilt = self._generic_ranges()
            yaw = node.pan_space.to_space(float(pan_tilt.x), pan)
            pitch = node.tilt_space.to_space(float(pan_tilt.y), tilt)
        else:
            raise CameraError(f"device {self.device_id}: ONVIF GetStatus position is in an unknown space {space}")
        zoom = 1.0
        zoom_vector = getattr(position, "Zoom", None)
        if zoom_vector is not None and node.zoom_space is not None:
            zoom = node.zoom_space.to_space(float(zoom_vector.x), self._zoom_range())
        return wrap_deg(yaw), pitch, zoom

    def status(self) -> dict:
        yaw, pitch, zoom = self.read_position()
        return {"pose": {"yaw": yaw, "pitch": pitch, "roll": 0.0, "zoom": zoom}}

    def close(self) -> None:
        if self._camera is not None and self._loop is not None:
            try:
                self._run(self._camera.close(), "close")
            except CameraError:
                pass
            self._camera = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            self._loop.close()
            self._loop = None
        super().close()
