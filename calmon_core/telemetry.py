"""Telemetry as sites send it: the numbers a site publishes turned into calmon's degrees, a
plausibility check on the result, and position polling as a telemetry source.

Pure Python (a thread for the poller, clock and sleep injected); the transport (MQTT latch, camera
driver) lives in resources/.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from calmon_core.camera_config import TelemetryTransform
from calmon_core.conventions import wrap_deg
from calmon_core.models import TelemetrySample

HISTORY = 20000


def samples_after(samples: Sequence[TelemetrySample], t: float) -> list[TelemetrySample]:
    """The samples stamped strictly after t, oldest first, from a buffer ordered by time (newest last)."""
    out = []
    for sample in reversed(samples):
        if sample.timestamp <= t:
            break
        out.append(sample)
    out.reverse()
    return out


class ImplausibleTelemetry(ValueError):
    """A sample that cannot be a pose in degrees (e.g. tenths of a degree read as degrees)."""


def transform_values(
    yaw: float, pitch: float, roll: float, zoom: float, transform: TelemetryTransform
) -> tuple[float, float, float, float]:
    """(yaw, pitch, roll, zoom) in calmon's convention; ImplausibleTelemetry when they cannot be.

    Yaw beyond +-360 or pitch beyond +-90 after the transform is no pose: typically a site sending
    tenths of a degree (Hikvision's 1117 for 111.7) with no `scale: 0.1` configured.
    """
    t = transform
    y = yaw * t.yaw_scale * t.yaw_sign + t.yaw_offset
    p = pitch * t.pitch_scale * t.pitch_sign + t.pitch_offset
    r = roll * t.roll_scale * t.roll_sign
    z = zoom * t.zoom_scale + t.zoom_offset
    hint = "; are they in tenths of a degree? set telemetry.transform yaw_scale/pitch_scale: 0.1"
    if abs(y) > 360.0:
        raise ImplausibleTelemetry(f"yaw {y:g} is not an angle in degrees (|yaw| > 360){hint}")
    if abs(p) > 90.0:
        raise ImplausibleTelemetry(f"pitch {p:g} is beyond +-90 degrees{hint}")
    if abs(r) > 180.0:
        raise ImplausibleTelemetry(f"roll {r:g} is beyond +-180 degrees{hint}")
    if not z > 0:
        raise ImplausibleTelemetry(f"zoom {z:g} is not a zoom factor (> 0): check telemetry.transform zoom_scale")
    return wrap_deg(y), p, wrap_deg(r), z


def transform_sample(sample: TelemetrySample, transform: TelemetryTransform) -> TelemetrySample:
    yaw, pitch, roll, zoom = transform_values(sample.yaw, sample.pitch, sample.roll, sample.zoom, transform)
    return TelemetrySample(timestamp=sample.timestamp, yaw=yaw, pitch=pitch, roll=roll, zoom=zoom)


class TransformedSource:
    """A TelemetrySource whose samples pass through a TelemetryTransform; implausible ones are
    dropped, counted, and named in describe()."""

    def __init__(self, source: Any, transform: TelemetryTransform):
        self.source = source
        self.transform = transform
        self.implausible_count = 0
        self.last_implausible: str | None = None
        self._seen: set[float] = set()

    def __getattr__(self, name: str) -> Any:  # counters, publish_command, ... of the wrapped source
        return getattr(self.source, name)

    def start(self) -> Any:
        self.source.start()
        return self

    def stop(self) -> None:
        self.source.stop()

    def _map(self, samples: list[TelemetrySample]) -> list[TelemetrySample]:
        out = []
        for sample in samples:
            try:
                out.append(transform_sample(sample, self.transform))
            except ImplausibleTelemetry as exc:
                if sample.timestamp not in self._seen:  # counted once, however often it is read
                    self._seen.add(sample.timestamp)
                    self.implausible_count += 1
                    self.last_implausible = str(exc)
        return out

    def latest(self) -> TelemetrySample | None:
        sample = self.source.latest()
        mapped = self._map([sample]) if sample is not None else []
        return mapped[0] if mapped else None

    def samples_since(self, t: float) -> list[TelemetrySample]:
        return self._map(self.source.samples_since(t))

    def describe(self) -> str:
        inner = getattr(self.source, "describe", None)
        text = inner() if callable(inner) else type(self.source).__name__
        if self.implausible_count:
            text += f"; {self.implausible_count} samples rejected as implausible (last: {self.last_implausible})"
        return text


PositionReader = Callable[[], tuple[float, float, float]]  # (yaw, pitch, zoom) in calmon's degrees


class PollingSource:
    """Telemetry by asking the camera for its position at `hz` (ONVIF GetStatus, VAPIX
    query=position, ISAPI status): a TelemetrySource for sites without MQTT.

    Each answer is stamped with the time the request was sent (on `clock`): the position is at
    least that recent. A failed request is counted and leaves a gap, which the stability detector
    reads as silence.
    """

    def __init__(
        self,
        read_position: PositionReader,
        hz: float = 5.0,
        label: str = "camera",
        clock: Callable[[], float] = time.time,
    ):
        self.read_position = read_position
        self.period = 1.0 / float(hz)
        self.label = label
        self.clock = clock
        self.received_count = 0
        self.error_count = 0
        self.last_error: str | None = None
        self._samples: deque[TelemetrySample] = deque(maxlen=HISTORY)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PollingSource:
        if self._thread is None:
            self._stop.clear()
            self._poll_once()  # a first position before anyone asks
            self._thread = threading.Thread(target=self._run, name=f"poll-{self.label}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._poll_once()

    def _poll_once(self) -> None:
        asked_at = self.clock()
        try:
            yaw, pitch, zoom = self.read_position()
        except Exception as exc:  # noqa: BLE001 - any failure of the camera is a missed sample
            with self._lock:
                self.error_count += 1
                self.last_error = str(exc)
            return
        if not all(math.isfinite(v) for v in (yaw, pitch, zoom)):
            with self._lock:
                self.error_count += 1
                self.last_error = f"non-finite position {(yaw, pitch, zoom)}"
            return
        with self._lock:
            if self._samples and asked_at <= self._samples[-1].timestamp:
                asked_at = math.nextafter(self._samples[-1].timestamp, math.inf)
            self._samples.append(TelemetrySample(timestamp=asked_at, yaw=yaw, pitch=pitch, roll=0.0, zoom=zoom))
            self.received_count += 1

    def latest(self) -> TelemetrySample | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def samples_since(self, t: float) -> list[TelemetrySample]:
        with self._lock:
            return samples_after(self._samples, t)

    def describe(self) -> str:
        text = f"position polled from {self.label} at {1.0 / self.period:g} Hz: {self.received_count} answers"
        if self.error_count:
            text += f", {self.error_count} failed (last: {self.last_error})"
        return text
