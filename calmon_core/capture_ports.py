"""What the capture orchestration (calmon_core.extraction) needs from the outside world: a telemetry
stream and a camera, as Protocols the resources layer implements (resources.mqtt.MqttTelemetryLatch,
resources.camera.CameraClient), and the errors they raise. The resources import this module; it
imports nothing of theirs."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from calmon_core.models import TelemetrySample


class CaptureFailed(Exception):
    """No usable capture; the message says in plain words what happened and for how long."""


class CameraFault(Exception):
    """Base of the errors a CameraControl raises (offline, timeout, not a JPEG, undecodable)."""


@runtime_checkable
class TelemetrySource(Protocol):
    """A device's telemetry stream. Sample timestamps are on the caller's clock."""

    def start(self) -> Any: ...
    def stop(self) -> None: ...
    def latest(self) -> TelemetrySample | None: ...
    def samples_since(self, t: float) -> list[TelemetrySample]: ...  # received strictly after t


@runtime_checkable
class CameraControl(Protocol):
    def grab(self) -> tuple[np.ndarray, bytes]: ...  # BGR image and the JPEG bytes
    def move_absolute(self, yaw: float, pitch: float, zoom: float) -> None: ...
