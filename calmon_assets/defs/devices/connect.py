"""Connecting one device's endpoints (direct or port-forwarded) to the capture extractor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from calmon_core.config import CalmonConfig, Deployment, Device
from calmon_core.extraction import CaptureExtractor
from resources.camera import CameraResource
from resources.kubectl import KubectlResource, device_endpoints
from resources.mqtt import MqttResource


@contextmanager
def device_extractor(
    config: CalmonConfig,
    deployment: Deployment,
    device: Device,
    kubectl: KubectlResource,
    mqtt: MqttResource,
    camera: CameraResource,
    workdir: Path,
) -> Iterator[CaptureExtractor]:
    """A CaptureExtractor wired to this device's endpoints; port-forwards close on exit."""
    with device_endpoints(deployment, device, kubectl_executable=kubectl.executable) as endpoints:
        # clients read the addresses from `endpoints` at every connection: a forward restarted
        # mid-check (ensure_alive) listens on a new local port
        yield CaptureExtractor(
            config.fleet,
            telemetry_factory=lambda dep, dev: mqtt.latch(
                endpoints.mqtt_host,
                endpoints.mqtt_port,
                dep.topic(dev.id),
                dep.telemetry_fields,
                username=dep.mqtt.username,
                password=dep.mqtt.password.get_secret_value() if dep.mqtt.password else None,
                reresolve=endpoints.mqtt_address if endpoints.mqtt_forward else None,
            ),
            camera_factory=lambda dep, dev: camera.client(
                dev.id,
                dev.camera,
                base_url=lambda: endpoints.camera_base_url,
                reresolve=endpoints.ensure_alive if endpoints.camera_forward else None,
            ),
            workdir=workdir,
            deadband_deg=config.settings.capture.deadband_deg,
            image_motion_px=config.settings.capture.image_motion_px,
        )
