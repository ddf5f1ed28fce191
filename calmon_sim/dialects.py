"""The vendor HTTP dialects a simulated camera speaks, and HTTP Digest authentication (RFC 7616,
MD5 with qop=auth, as Axis and Hikvision firmware do).

    vapix  GET /axis-cgi/com/ptz.cgi?pan=&tilt=&zoom=  (degrees, zoom 1...9999) -> 204
           GET /axis-cgi/com/ptz.cgi?query=position    -> text "pan=..\\ntilt=..\\nzoom=.."
           GET /axis-cgi/jpg/image.cgi                 -> JPEG
    isapi  PUT /ISAPI/PTZCtrl/channels/1/absolute      <PTZData><AbsoluteHigh> tenths, elevation DOWN
           GET /ISAPI/PTZCtrl/channels/1/status        <PTZStatus><AbsoluteHigh>
           GET /ISAPI/Streaming/channels/101/picture   -> JPEG

The units and sign conventions are the vendors', not calmon's: a driver that forgets to convert
points the camera somewhere else and the check's offsets come out wrong.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from calmon_sim.camera import SimCamera

REALM = "calmon-sim"
ISAPI_NS = "http://www.isapi.org/ver20/XMLSchema"
VAPIX_ZOOM_UNITS = (1.0, 9999.0)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - HTTP Digest is MD5 by definition


class DigestAuth:
    """Server side of HTTP Digest: issues nonces, checks Authorization headers."""

    def __init__(self, username: str, password: str):
        self.username = username
        self.password = password
        self._nonces: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.refused = 0

    def challenge(self) -> str:
        nonce = secrets.token_hex(16)
        with self._lock:
            self._nonces[nonce] = None
            while len(self._nonces) > 1000:
                self._nonces.popitem(last=False)
        return f'Digest realm="{REALM}", qop="auth", nonce="{nonce}", algorithm=MD5'

    def check(self, method: str, header: str | None) -> bool:
        if not header or not header.lower().startswith("digest "):
            return False
        fields = _parse_digest(header[7:])
        with self._lock:
            known = fields.get("nonce") in self._nonces
        if not known or fields.get("username") != self.username or fields.get("realm") != REALM:
            self.refused += 1
            return False
        ha1 = _md5(f"{self.username}:{REALM}:{self.password}")
        ha2 = _md5(f"{method}:{fields.get('uri', '')}")
        if fields.get("qop") == "auth":
            expected = _md5(f"{ha1}:{fields['nonce']}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:auth:{ha2}")
        else:
            expected = _md5(f"{ha1}:{fields['nonce']}:{ha2}")
        ok = secrets.compare_digest(expected, fields.get("response", ""))
        if not ok:
            self.refused += 1
        return ok


def _parse_digest(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in _split_commas(text):
        key, sep, value = part.strip().partition("=")
        if sep:
            out[key.strip().lower()] = value.strip().strip('"')
    return out


def _split_commas(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


# ----------------------------------------------------------------------------- answers

Answer = tuple[int, str, bytes]  # status, content type, body


def _text(status: int, text: str) -> Answer:
    return status, "text/plain", text.encode()


def vapix(cam: SimCamera, method: str, path: str, query: str) -> Answer | None:
    if path == "/axis-cgi/jpg/image.cgi" and method == "GET":
        return 200, "image/jpeg", cam.snapshot_jpeg()
    if path != "/axis-cgi/com/ptz.cgi" or method != "GET":
        return None
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    lo, hi = cam.spec.zoom_limits()
    if params.get("query") == "position":
        pose = cam.reported_pose()
        units = VAPIX_ZOOM_UNITS[0] + (pose.zoom - lo) / (hi - lo) * (VAPIX_ZOOM_UNITS[1] - VAPIX_ZOOM_UNITS[0])
        return _text(200, f"pan={pose.yaw:.4f}\ntilt={pose.pitch:.4f}\nzoom={round(units)}\niris=5000\nautofocus=on\n")
    if "pan" in params or "tilt" in params or "zoom" in params:
        if cam.spec.refuse_absolute_move:
            return _text(200, "Error: absolute positioning not supported\n")
        try:
            here = cam.target()
            yaw = float(params["pan"]) if "pan" in params else here[0]
            pitch = float(params["tilt"]) if "tilt" in params else here[1]
            zoom = here[2]
            if "zoom" in params:
                units = min(VAPIX_ZOOM_UNITS[1], max(VAPIX_ZOOM_UNITS[0], float(params["zoom"])))
                zoom = lo + (units - VAPIX_ZOOM_UNITS[0]) / (VAPIX_ZOOM_UNITS[1] - VAPIX_ZOOM_UNITS[0]) * (hi - lo)
            if not -180 <= yaw <= 180 or not -180 <= pitch <= 180:
                return _text(200, f"Error: pan/tilt out of range ({yaw}, {pitch})\n")
            cam.move_to(yaw, pitch, zoom)
        except ValueError as exc:
            return _text(200, f"Error: {exc}\n")
        return 204, "text/plain", b""
    return _text(200, "Error: no PTZ parameter\n")


def _isapi_status(code: int, text: str, status: int) -> Answer:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ResponseStatus version="2.0" xmlns="{ISAPI_NS}">'
        f"<requestURL>/ISAPI/PTZCtrl</requestURL><statusCode>{code}</statusCode>"
        f"<statusString>{text}</statusString><subStatusCode>{'ok' if code == 1 else 'invalidOperation'}"
        "</subStatusCode></ResponseStatus>"
    )
    return status, "application/xml", body.encode()


def isapi(cam: SimCamera, method: str, path: str, body: bytes) -> Answer | None:
    if path == "/ISAPI/Streaming/channels/101/picture" and method == "GET":
        return 200, "image/jpeg", cam.snapshot_jpeg()
    if path == "/ISAPI/PTZCtrl/channels/1/status" and method == "GET":
        pose = cam.reported_pose()
        azimuth = round((pose.yaw % 360.0) * 10) % 3600
        elevation = -round(pose.pitch * 10)  # Hikvision: elevation grows looking down
        xml = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<PTZStatus version="2.0" xmlns="{ISAPI_NS}">'
            f"<AbsoluteHigh><elevation>{elevation}</elevation><azimuth>{azimuth}</azimuth>"
            f"<absoluteZoom>{round(pose.zoom * 10)}</absoluteZoom></AbsoluteHigh></PTZStatus>"
        )
        return 200, "application/xml", xml.encode()
    if path == "/ISAPI/PTZCtrl/channels/1/absolute" and method == "PUT":
        if cam.spec.refuse_absolute_move:
            return _isapi_status(4, "Invalid Operation", 403)
        try:
            root = ET.fromstring(body)
            values = {el.tag.rsplit("}", 1)[-1]: el.text for el in root.iter()}
            azimuth, elevation = int(values["azimuth"]), int(values["elevation"])  # integers, as the firmware
            zoom = int(values.get("absoluteZoom") or 10)
        except (ET.ParseError, KeyError, TypeError, ValueError):
            return _isapi_status(5, "Invalid XML Format", 400)
        if not (0 <= azimuth <= 3600 and -900 <= elevation <= 900):
            return _isapi_status(4, "Invalid Operation", 400)
        cam.move_to(azimuth / 10.0, -elevation / 10.0, zoom / 10.0)
        return _isapi_status(1, "OK", 200)
    return None
