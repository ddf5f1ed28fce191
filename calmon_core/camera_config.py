"""devices.yaml: how calmon speaks to a camera (protocol, credentials, per-protocol options) and
how a site's telemetry is read (field transform, publish mode, source).

Hooked into calmon_core.config (CameraEndpoint, Device, Deployment). Passwords are SecretStr and
are written as ${NAME} in the file, read from the environment at load time.
"""

from __future__ import annotations

import math
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CameraProtocol = Literal["http", "vapix", "isapi", "onvif"]
PROTOCOLS: tuple[str, ...] = ("http", "vapix", "isapi", "onvif")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def reject_url_credentials(url: str | None) -> str | None:
    """A URL with user:password@ in it would be echoed into logs and rows: refuse it."""
    if url and (urlsplit(url).username is not None or urlsplit(url).password is not None):
        raise ValueError(
            "credentials inside a URL are not allowed (they would end up in logs and results); "
            "set camera.username and camera.password: ${ENV_VAR} instead"
        )
    return url


def _range(value: tuple[float, float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    lo, hi = value
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"must be [low, high] with low < high, got {[lo, hi]}")
    return value


class OnvifOptions(_Strict):
    """ONVIF Profile S/T: device service at http://host:port/onvif/device_service.

    pan_range/tilt_range (degrees) map the generic -1...1 pan/tilt space onto degrees when the PTZ
    node does not offer SphericalPositionSpaceDegrees; zoom_range maps the generic 0...1 zoom space
    onto calmon's zoom factor (what hfov_by_zoom is keyed by).
    """

    port: int | None = Field(default=None, gt=0, lt=65536)  # default: the base_url's port
    profile: str | None = None  # media profile token; default: the first profile with PTZ
    pan_range: tuple[float, float] | None = None
    tilt_range: tuple[float, float] | None = None
    zoom_range: tuple[float, float] | None = None
    use_degrees: bool = True  # use SphericalPositionSpaceDegrees when the node offers it
    adjust_time: bool = True  # sign WS-Security tokens with the camera's clock (GetSystemDateAndTime)

    _ranges = field_validator("pan_range", "tilt_range", "zoom_range")(_range)

    @model_validator(mode="after")
    def _both_ranges(self) -> OnvifOptions:
        if (self.pan_range is None) != (self.tilt_range is None):
            raise ValueError("pan_range and tilt_range go together (the generic space has both axes)")
        if not self.use_degrees and self.pan_range is None:
            raise ValueError(
                "use_degrees: false moves in the generic -1...1 space, which needs pan_range and tilt_range"
            )
        return self


class VapixOptions(_Strict):
    """Axis VAPIX PTZ API: /axis-cgi/com/ptz.cgi, /axis-cgi/jpg/image.cgi.

    Axis zoom is 1...9999 units; zoom_range gives the zoom factors at 1 and 9999 (linear between).
    """

    camera: int = Field(default=1, ge=1)
    zoom_range: tuple[float, float] = (1.0, 1.0)
    resolution: str | None = None  # image.cgi resolution=WxH; default: the camera's

    @field_validator("zoom_range")
    @classmethod
    def _zoom(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not (value[0] > 0 and value[1] >= value[0]):
            raise ValueError(f"must be [zoom at 1, zoom at 9999] with 0 < low <= high, got {list(value)}")
        return value


class IsapiOptions(_Strict):
    """Hikvision ISAPI: /ISAPI/PTZCtrl/channels/N/{absolute,status}, /ISAPI/Streaming/channels/M/picture.

    Azimuth 0...3600 and elevation in tenths of a degree, zoom in tenths of the zoom factor.
    elevation_down: Hikvision heads count elevation positive looking DOWN (calmon's pitch is up).
    """

    channel: int = Field(default=1, ge=1)
    stream_channel: int = Field(default=101, ge=1)
    elevation_down: bool = True


class TelemetryTransform(_Strict):
    """From the site's numbers to calmon's degrees: value * scale * sign + offset, then wrap.

    scale 0.1 reads Hikvision tenths; sign -1 a tilt that grows downwards; wrap 'pm180' or '0_360'
    only says how yaw is written (calmon wraps to +-180 either way); zoom_scale/zoom_offset map a
    site's zoom number (e.g. focal length steps) onto the zoom factor.
    """

    yaw_scale: float = 1.0
    yaw_offset: float = 0.0
    yaw_sign: Literal[1, -1] = 1
    pitch_scale: float = 1.0
    pitch_offset: float = 0.0
    pitch_sign: Literal[1, -1] = 1
    roll_scale: float = 1.0
    roll_sign: Literal[1, -1] = 1
    zoom_scale: float = 1.0
    zoom_offset: float = 0.0
    wrap: Literal["pm180", "0_360"] = "pm180"

    @field_validator("yaw_scale", "pitch_scale", "roll_scale", "zoom_scale")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if not math.isfinite(value) or value == 0:
            raise ValueError(f"must be a finite non-zero number, got {value!r}")
        return value


class TelemetryConfig(_Strict):
    """How a deployment's (or one device's) telemetry arrives.

    source: mqtt (the site publishes) or poll (calmon asks the camera: ONVIF GetStatus, VAPIX
    query=position, ISAPI status). mode: periodic (a sample every 1/rate s; silence longer than
    max_silence means "may be moving") or on_change (a sample only when the pose changes: the last
    value holds, and stillness is no change for stabilize_time). Retained MQTT messages are never
    live evidence: in periodic mode they are ignored, in on_change mode they give the last value,
    still only from the moment calmon subscribed.
    """

    source: Literal["mqtt", "poll"] = "mqtt"
    mode: Literal["periodic", "on_change"] = "periodic"
    max_silence: float | None = Field(default=None, gt=0)  # default 2 s periodic, unlimited on_change
    poll_hz: float = Field(default=5.0, gt=0, le=50)
    transform: TelemetryTransform = TelemetryTransform()

    @model_validator(mode="after")
    def _poll_is_periodic(self) -> TelemetryConfig:
        if self.source == "poll" and self.mode != "periodic":
            raise ValueError("source: poll is periodic by nature (calmon asks at poll_hz); drop mode: on_change")
        return self

    def silence_limit(self) -> float | None:
        """Seconds without a sample after which the camera is not called still (None: no limit)."""
        if self.max_silence is not None:
            return self.max_silence
        return None if self.mode == "on_change" else 2.0
