"""`protocol: isapi`: Hikvision network cameras (ISAPI PTZCtrl and Streaming), Digest authentication.

    PUT /ISAPI/PTZCtrl/channels/N/absolute   <PTZData><AbsoluteHigh>elevation, azimuth, absoluteZoom
    GET /ISAPI/PTZCtrl/channels/N/status     <PTZStatus><AbsoluteHigh>... the same fields
    GET /ISAPI/Streaming/channels/M/picture  a JPEG

Azimuth is 0...3600 tenths of a degree clockwise, elevation tenths of a degree growing DOWNWARDS
(camera.isapi.elevation_down, the default), absoluteZoom tenths of the zoom factor. Errors come as a
<ResponseStatus> with a statusCode and statusString.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from calmon_core.conventions import wrap_deg
from resources.cameras.base import CameraClient, _join

NAMESPACE = "http://www.isapi.org/ver20/XMLSchema"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: ET.Element, name: str) -> ET.Element | None:
    for element in root.iter():
        if _local(element.tag) == name:
            return element
    return None


def absolute_body(azimuth: int, elevation: int, zoom: int) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<PTZData version="2.0" xmlns="{NAMESPACE}">'
        f"<AbsoluteHigh><elevation>{elevation}</elevation><azimuth>{azimuth}</azimuth>"
        f"<absoluteZoom>{zoom}</absoluteZoom></AbsoluteHigh></PTZData>"
    ).encode()


class IsapiCamera(CameraClient):
    def _path(self, path: str) -> str | None:
        base = self.base_url
        return _join(base, path) if base else None

    @property
    def snapshot_url(self) -> str | None:
        if self.endpoint.snapshot_url and not self._override():
            return self.endpoint.snapshot_url
        return self._path(f"/ISAPI/Streaming/channels/{self.endpoint.isapi.stream_channel}/picture")

    @property
    def ptz_url(self) -> str | None:
        return self._path(f"/ISAPI/PTZCtrl/channels/{self.endpoint.isapi.channel}/absolute")

    @property
    def status_url(self) -> str | None:
        return self._path(f"/ISAPI/PTZCtrl/channels/{self.endpoint.isapi.channel}/status")

    def _elevation_sign(self) -> int:
        return -1 if self.endpoint.isapi.elevation_down else 1

    def _move(self, yaw: float, pitch: float, zoom: float) -> None:
        azimuth = round((yaw % 360.0) * 10) % 3600
        elevation = round(pitch * 10) * self._elevation_sign()
        response, url = self._request(
            "PUT",
            lambda: self.ptz_url,
            "PTZ move",
            data=absolute_body(azimuth, elevation, round(zoom * 10)),
            headers={"Content-Type": "application/xml"},
        )
        self._check_status(response.text, url)

    def _check_status(self, text: str, url: str) -> None:
        if not text.strip():
            return
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            return
        code = _find(root, "statusCode")
        if code is not None and (code.text or "").strip() not in ("1", ""):
            status = _find(root, "statusString")
            sub = _find(root, "subStatusCode")
            detail = " / ".join(
                (e.text or "").strip() for e in (status, sub) if e is not None and (e.text or "").strip()
            )
            raise self._fail(f"camera refused the PTZ move: statusCode {code.text} {detail}", url)

    def read_position(self) -> tuple[float, float, float]:
        response, url = self._request("GET", lambda: self.status_url, "PTZ status")
        try:
            root = ET.fromstring(response.text)
        except ET.ParseError:
            raise self._fail(f"PTZ status is not XML: {response.text[:120]!r}", url) from None
        try:
            azimuth = float(_find(root, "azimuth").text)  # type: ignore[union-attr, arg-type]
            elevation = float(_find(root, "elevation").text)  # type: ignore[union-attr, arg-type]
            zoom_node = _find(root, "absoluteZoom")
            zoom = float(zoom_node.text) if zoom_node is not None and zoom_node.text else 10.0
        except (AttributeError, TypeError, ValueError):
            raise self._fail("PTZ status has no azimuth/elevation numbers", url) from None
        return wrap_deg(azimuth / 10.0), elevation / 10.0 * self._elevation_sign(), zoom / 10.0

    def status(self) -> dict:
        yaw, pitch, zoom = self.read_position()
        return {"pose": {"yaw": yaw, "pitch": pitch, "roll": 0.0, "zoom": zoom}}
