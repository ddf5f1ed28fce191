"""Camera drivers, one module per protocol, all satisfying CameraDriver.

    http   calmon's simulator JSON API (resources.cameras.http)
    vapix  Axis VAPIX PTZ and image CGIs, Digest auth (resources.cameras.vapix)
    isapi  Hikvision ISAPI PTZCtrl and Streaming, Digest auth (resources.cameras.isapi)
    onvif  ONVIF Profile S/T over SOAP with WS-Security (resources.cameras.onvif)

PTZ over MQTT (camera.ptz: mqtt) is the extractor's: it publishes on the deployment's command
topic through the telemetry connection (resources.mqtt.command_payload).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import dagster as dg
import numpy as np

from calmon_core.config import CameraEndpoint
from resources.cameras.base import CameraAuthError, CameraClient, CameraError, CameraRefused, strip_credentials
from resources.cameras.http import JsonHttpCamera
from resources.cameras.isapi import IsapiCamera
from resources.cameras.onvif import OnvifCamera
from resources.cameras.vapix import VapixCamera

__all__ = [
    "CameraAuthError",
    "CameraClient",
    "CameraDriver",
    "CameraError",
    "CameraRefused",
    "CameraResource",
    "DRIVERS",
    "IsapiCamera",
    "JsonHttpCamera",
    "OnvifCamera",
    "VapixCamera",
    "camera_client",
    "strip_credentials",
]


@runtime_checkable
class CameraDriver(Protocol):
    """What the extractor needs of a camera, whatever it speaks."""

    def probe(self) -> None: ...  # fail fast when unreachable (or, for ONVIF, refusing us)
    def grab(self) -> tuple[np.ndarray, bytes]: ...
    def move_absolute(self, yaw: float, pitch: float, zoom: float) -> None: ...
    def read_position(self) -> tuple[float, float, float]: ...  # (yaw, pitch, zoom), calmon's degrees
    def close(self) -> None: ...


DRIVERS: dict[str, type[CameraClient]] = {
    "http": JsonHttpCamera,
    "vapix": VapixCamera,
    "isapi": IsapiCamera,
    "onvif": OnvifCamera,
}


def camera_client(
    device_id: str,
    endpoint: CameraEndpoint,
    base_url: str | Callable[[], str | None] | None = None,
    timeout: float = 10.0,
    reresolve: Callable[[], object] | None = None,
    port_map: Callable[[], dict[int, int]] | None = None,
    max_image_size: tuple[int, int] | None = None,
) -> CameraClient:
    """The driver for the endpoint's protocol."""
    return DRIVERS[endpoint.protocol](
        device_id,
        endpoint,
        base_url=base_url,
        timeout=timeout,
        reresolve=reresolve,
        port_map=port_map,
        max_image_size=max_image_size,
    )


class CameraResource(dg.ConfigurableResource):
    """Builds camera clients for devices.yaml endpoints (or port-forwarded ones)."""

    timeout_seconds: float = 10.0

    def client(
        self,
        device_id: str,
        endpoint: CameraEndpoint,
        base_url: str | Callable[[], str | None] | None = None,
        reresolve: Callable[[], object] | None = None,
        port_map: Callable[[], dict[int, int]] | None = None,
        max_image_size: tuple[int, int] | None = None,
    ) -> CameraClient:
        return camera_client(
            device_id,
            endpoint,
            base_url=base_url,
            timeout=self.timeout_seconds,
            reresolve=reresolve,
            port_map=port_map,
            max_image_size=max_image_size,
        )
