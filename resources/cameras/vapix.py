"""`protocol: vapix`: Axis network cameras (VAPIX PTZ API and image API), Digest authentication.

    GET /axis-cgi/com/ptz.cgi?camera=N&pan=P&tilt=T&zoom=Z   absolute move (pan/tilt degrees, zoom 1...9999)
    GET /axis-cgi/com/ptz.cgi?camera=N&query=position        "pan=..\\ntilt=..\\nzoom=..\\n"
    GET /axis-cgi/jpg/image.cgi?camera=N[&resolution=WxH]    a JPEG

Axis reports pan growing clockwise and tilt growing upwards, both in degrees: calmon's convention.
Zoom units 1...9999 are mapped linearly onto camera.vapix.zoom_range (zoom factors).
"""

from __future__ import annotations

from urllib.parse import urlencode

from resources.cameras.base import CameraClient, CameraError, _join

PTZ_CGI = "/axis-cgi/com/ptz.cgi"
IMAGE_CGI = "/axis-cgi/jpg/image.cgi"
ZOOM_UNITS = (1.0, 9999.0)


def zoom_to_units(zoom: float, zoom_range: tuple[float, float]) -> int:
    lo, hi = zoom_range
    if hi == lo:
        return 1
    fraction = (zoom - lo) / (hi - lo)
    return round(ZOOM_UNITS[0] + fraction * (ZOOM_UNITS[1] - ZOOM_UNITS[0]))


def units_to_zoom(units: float, zoom_range: tuple[float, float]) -> float:
    lo, hi = zoom_range
    return lo + (units - ZOOM_UNITS[0]) / (ZOOM_UNITS[1] - ZOOM_UNITS[0]) * (hi - lo)


def parse_position(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


class VapixCamera(CameraClient):
    def _cgi(self, path: str, **query: object) -> str | None:
        base = self.base_url
        return f"{_join(base, path)}?{urlencode(query)}" if base else None

    @property
    def snapshot_url(self) -> str | None:
        if self.endpoint.snapshot_url and not self._override():
            return self.endpoint.snapshot_url
        options = self.endpoint.vapix
        query: dict[str, object] = {"camera": options.camera}
        if options.resolution:
            query["resolution"] = options.resolution
        return self._cgi(IMAGE_CGI, **query)

    @property
    def ptz_url(self) -> str | None:
        return self._cgi(PTZ_CGI, camera=self.endpoint.vapix.camera)

    def _move(self, yaw: float, pitch: float, zoom: float) -> None:
        options = self.endpoint.vapix
        lo, hi = options.zoom_range
        if not lo - 1e-9 <= zoom <= hi + 1e-9:
            raise CameraError(
                f"device {self.device_id}: zoom {zoom:g} is outside camera.vapix.zoom_range {[lo, hi]} "
                "(the zoom factors at Axis zoom 1 and 9999)"
            )
        query = {
            "camera": options.camera,
            "pan": f"{yaw:.4f}",
            "tilt": f"{pitch:.4f}",
            "zoom": zoom_to_units(zoom, options.zoom_range),
        }
        response, url = self._request("GET", lambda: self._cgi(PTZ_CGI, **query), "PTZ move")
        # Axis answers 204 on success; errors come as 200 with an "Error: ..." text body
        if response.status_code == 200 and response.text.strip().lower().startswith("error"):
            raise self._fail(f"camera refused the PTZ move: {response.text.strip()[:200]}", url)

    def read_position(self) -> tuple[float, float, float]:
        response, url = self._request(
            "GET", lambda: self._cgi(PTZ_CGI, camera=self.endpoint.vapix.camera, query="position"), "position query"
        )
        values = parse_position(response.text)
        try:
            pan, tilt = float(values["pan"]), float(values["tilt"])
            units = float(values.get("zoom", ZOOM_UNITS[0]))
        except (KeyError, ValueError):
            raise self._fail(f"position query answer has no pan/tilt numbers: {response.text[:120]!r}", url) from None
        return pan, tilt, units_to_zoom(units, self.endpoint.vapix.zoom_range)
