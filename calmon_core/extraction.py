"""Query and reference captures: wait for a still camera, grab, confirm, write calmon.capture/1.

This is the orchestration only. It talks to the outside through the two protocols of
calmon_core.capture_ports, made by the factories it is given (calmon_assets wires them to a
device's endpoints), and takes its clock and sleep as arguments, so it runs the same against a real
site, the simulated fleet and fakes in unit tests.

Telemetry timestamps handed over by a TelemetrySource must be on the extractor's clock (the latch
stamps each sample with its arrival time for that reason; device clocks drift).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, List, Optional, Tuple  # noqa: UP035 - seed signature

import cv2
import numpy as np

from calmon_core.capture_format import encode_jpeg, write_capture
from calmon_core.capture_ports import (
    CameraControl,
    CameraCredentialsRefused,
    CameraFault,
    CaptureFailed,
    TelemetrySource,
)
from calmon_core.config import Deployment, Device, Fleet
from calmon_core.conventions import wrap_deg
from calmon_core.models import Capture, CaptureKind, CaptureMode, Frame, Pose, TelemetrySample
from calmon_core.stability import StabilityDetector, StabilityStatus
from calmon_core.stacking import LOW_LIGHT_FRAMES, burst_size, stack_frames
from calmon_core.telemetry import PollingSource, TransformedSource

# How often a waiting capture looks at its telemetry: samples come at 1-10 Hz, so a tenth of a
# second misses none and decides within one; each wake-up costs CPU and a turn of the GIL in every
# capture waiting at once (64 watches: 7 CPU ms per watch and 10 s against 15 at 0.05 s)
POLL_SECONDS = 0.1
# A stop counts as reached when telemetry reports the commanded pose within this (degrees; zoom
# within this fraction). Real heads land within a few hundredths of a degree of the command.
ARRIVAL_TOLERANCE_DEG = 0.5
ARRIVAL_TOLERANCE_ZOOM = 0.02
# back home means stopped there: within the arrival tolerance a head coming back is still moving
HOME_STILL_SECONDS = 1.0
# Telemetry can freeze while the head keeps moving (a stuck bridge repeating its last message):
# then only the picture tells. Two grabs of a still head differ by sensor noise, well under a pixel.
IMAGE_MOTION_PX = 1.0
_MOTION_WIDTH = 640  # the measure runs on frames at most this wide: ~10 ms, ~0.1 px
_MOTION_MIN_RESPONSE = 0.1  # below this phase correlation found no common structure to measure
_MOTION_SAME_GREY = 2.0  # mean grey difference of two coarse views of one featureless scene
STACKED_JPEG_QUALITY = 95  # a stacked frame is calmon's own image: stored as the references are


def default_timeout(stabilize_time: float) -> float:
    """The wait limit when none is given: a check must never hang, yet a patrol may take a while."""
    return 4.0 * float(stabilize_time) + 60.0


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def image_motion_px(first: np.ndarray, second: np.ndarray) -> float:
    """How far the picture moved between two frames, in pixels of the full frame.

    Phase correlation of downscaled grey frames: a few moving cars or a change of exposure leave
    the global shift near 0. inf when the two share no measurable structure although they differ
    (the view changed completely); 0 for a featureless scene that only shows noise.
    """
    if first.shape != second.shape:
        return math.inf
    if np.array_equal(first, second):
        return 0.0
    height, width = first.shape[:2]
    scale = min(1.0, _MOTION_WIDTH / width)
    size = (max(8, round(width * scale)), max(8, round(height * scale)))

    def grey(image: np.ndarray) -> np.ndarray:
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32)

    a, b = grey(first), grey(second)
    window = cv2.createHanningWindow(size, cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(a, b, window)
    if response < _MOTION_MIN_RESPONSE:
        # compared coarsely, so that sensor noise averages out and only a changed view remains
        coarse = (max(4, size[0] // 8), max(4, size[1] // 8))
        a, b = (cv2.resize(x, coarse, interpolation=cv2.INTER_AREA) for x in (a, b))
        return 0.0 if float(np.mean(np.abs(a - b))) <= _MOTION_SAME_GREY else math.inf
    return math.hypot(dx, dy) / scale


def _pose_text(pose: Pose | TelemetrySample | None) -> str:
    if pose is None:
        return "unknown"
    return f"yaw {pose.yaw:.2f} pitch {pose.pitch:.2f} roll {pose.roll:.2f} zoom {pose.zoom:.2f}"


class TelemetryWatch:
    """Feeds a StabilityDetector from a TelemetrySource and waits on it, on an injected clock."""

    def __init__(
        self,
        source: TelemetrySource,
        stabilize_time: float,
        deadband_deg: float = 0.0,
        max_silence: float = 2.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        label: str = "device",
        hold_last: bool = False,
    ):
        self.source = source
        self.detector = StabilityDetector(stabilize_time, deadband_deg, max_silence)
        # publish-on-change telemetry: the last value holds until a new one arrives, so no news
        # after a moment is evidence that nothing changed up to it
        self.hold_last = hold_last
        self.clock = clock
        self.sleep = sleep
        self.label = label
        self._cursor = -math.inf
        self.newest: TelemetrySample | None = None

    def pump(self) -> int:
        """Feed every sample that arrived since the last call; returns how many."""
        samples = self.source.samples_since(self._cursor)
        for sample in samples:
            self.detector.add(sample)
            if math.isfinite(sample.timestamp) and sample.timestamp > self._cursor:
                self._cursor = sample.timestamp
                self.newest = sample
        return len(samples)

    def status(self) -> StabilityStatus:
        self.pump()
        return self.detector.status(self.clock())

    def describe(self, now: float) -> str:
        text = self.detector.describe(now)
        describe_source = getattr(self.source, "describe", None)
        if callable(describe_source):
            text += f"; {describe_source()}"
        return text

    def wait_stable(
        self,
        deadline: float,
        accept: Callable[[StabilityStatus], str | None] | None = None,
        started: float | None = None,
        on_poll: Callable[[StabilityStatus], None] | None = None,
    ) -> StabilityStatus:
        """Wait until stable (and `accept` returns None) or raise CaptureFailed at the deadline;
        `on_poll` sees every status on the way."""
        started = self.clock() if started is None else started
        last_refusal: str | None = None
        while True:
            now = self.clock()
            status = self.status()
            if on_poll is not None:
                on_poll(status)
                now = self.clock()
            if status.stable:
                last_refusal = accept(status) if accept else None
                if last_refusal is None:
                    return status
            if now >= deadline:
                need = self.detector.stabilize_time
                what = (
                    f"telemetry was still but {last_refusal}"
                    if status.stable and last_refusal
                    else f"telemetry did not hold still for {need:g} s"
                )
                raise CaptureFailed(
                    f"{self.label}: {what} within the {round(deadline - started, 1):g} s timeout "
                    f"(waited {now - started:.1f} s; {status.reason}); {self.describe(now)}"
                )
            self.sleep(max(0.0, min(POLL_SECONDS, deadline - now)))

    def wait_sample_after(self, t: float, deadline: float) -> bool:
        """Wait until a sample stamped after `t` has arrived; False at the deadline."""
        while True:
            self.pump()
            if self.newest is not None and self.newest.timestamp > t:
                return True
            now = self.clock()
            if self.hold_last and self.newest is not None and now > t:
                return True
            if now >= deadline:
                return False
            self.sleep(max(0.0, min(POLL_SECONDS, deadline - now)))


@dataclass
class ExtractedCapture:
    """A capture taken (query or reference): its folder, manifest and how it went."""

    folder: Path
    capture: Capture
    waited_seconds: float
    failed_stops: list[dict] = field(default_factory=list)
    telemetry_summary: dict = field(default_factory=dict)


@dataclass
class _Shot:
    image: np.ndarray
    jpeg: bytes
    status: StabilityStatus
    taken_at: float
    stop: tuple[float, float, float] | None = None
    stacked: int = 1  # snapshots averaged into the image (calmon_core.stacking)


class CaptureExtractor:
    """Query and reference captures for the devices of a fleet (devices.yaml), through the clients
    its factories make."""

    def __init__(
        self,
        fleet: Fleet,
        telemetry_factory: Callable[[Deployment, Device], TelemetrySource],
        camera_factory: Callable[[Deployment, Device], CameraControl],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        workdir: Path | None = None,
        deadband_deg: float = 0.0,
        max_silence: float = 2.0,
        confirm_seconds: float = 0.5,
        arrival_tolerance_deg: float = ARRIVAL_TOLERANCE_DEG,
        image_motion_px: float = IMAGE_MOTION_PX,
        low_light_frames: int = LOW_LIGHT_FRAMES,
    ):
        self.fleet = fleet
        self.telemetry_factory = telemetry_factory
        self.camera_factory = camera_factory
        self.clock = clock
        self.sleep = sleep
        self.workdir = Path(workdir) if workdir is not None else None
        self.deadband_deg = deadband_deg
        self.max_silence = max_silence
        # after a grab, telemetry must stay still this long more: a head that started to move
        # during the grab (or telemetry lagging the image) shows up here
        self.confirm_seconds = confirm_seconds
        self.arrival_tolerance_deg = arrival_tolerance_deg
        self.image_motion_px = image_motion_px
        self.low_light_frames = low_light_frames

    # ------------------------------------------------------------------ public entry points

    def extract_query(
        self,
        device_id: str,
        stabilize_time: int = 30,
        timeout: Optional[int] = None,  # noqa: UP045
        active_ptz_stops: List[Tuple[float, float, float]] = [],  # noqa: B006, UP006
    ) -> ExtractedCapture:
        """One query capture: passive without stops, active with them (see the module doc)."""
        deployment, device = self._find(device_id)
        stops = [tuple(float(v) for v in stop) for stop in (active_ptz_stops or [])]
        for stop in stops:
            if len(stop) != 3 or not all(math.isfinite(v) for v in stop):
                raise ValueError(f"device {device_id}: active stop {stop!r} is not a finite (pan, tilt, zoom)")
        limit = default_timeout(stabilize_time) if timeout is None else float(timeout)
        if stops:
            return self._tour(
                deployment,
                device,
                stops,
                float(stabilize_time),
                limit,  # type: ignore[arg-type]
                CaptureKind.query,
                CaptureMode.active,
                None,
            )
        return self._passive(deployment, device, float(stabilize_time), limit)

    def capture_reference(
        self,
        device_id: str,
        stabilize_time: float = 2.0,
        timeout: float | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ExtractedCapture:
        """Drive the camera over its reference grid, a still frame at each pose; then back home."""
        deployment, device = self._find(device_id)
        stops = [(p.yaw, p.pitch, p.zoom) for p in device.reference_grid.poses()]
        limit = default_timeout(stabilize_time) if timeout is None else float(timeout)
        return self._tour(
            deployment,
            device,
            stops,
            float(stabilize_time),
            limit,
            CaptureKind.reference,
            CaptureMode.reference,
            progress,
        )

    # ------------------------------------------------------------------ passive

    def _passive(
        self, deployment: Deployment, device: Device, stabilize_time: float, timeout: float
    ) -> ExtractedCapture:
        label = f"device {device.id}"
        camera = self.camera_factory(deployment, device)
        _probe(camera)
        started = self.clock()
        source = self._telemetry(deployment, device, camera)
        source.start()
        try:
            watch = self._watch(source, stabilize_time, label, deployment, device)
            discarded: list[str] = []
            shot = self._grab_when_still(watch, camera, started + timeout, started, None, discarded)
            summary = self._summary(watch, source, camera, discarded)
        finally:
            source.stop()
            _close(camera)
        return self._write(deployment, device, CaptureKind.query, CaptureMode.passive, started, [shot], [], summary)

    # ------------------------------------------------------------------ active and reference

    def _tour(
        self,
        deployment: Deployment,
        device: Device,
        stops: list[tuple[float, float, float]],
        stabilize_time: float,
        timeout: float,
        kind: CaptureKind,
        mode: CaptureMode,
        progress: Callable[[int, int], None] | None,
    ) -> ExtractedCapture:
        label = f"device {device.id}"
        if device.camera.ptz == "none":
            raise CaptureFailed(
                f"{label}: camera.ptz is 'none' in devices.yaml, so calmon cannot "
                f"drive it to {len(stops)} poses for a {mode.value} capture"
            )
        camera = self.camera_factory(deployment, device)
        _probe(camera)
        started = self.clock()
        source = self._telemetry(deployment, device, camera)
        source.start()
        shots: list[_Shot] = []
        failed: list[dict] = []
        discarded: list[str] = []
        home: Pose | None = None
        home_report: dict[str, Any] = {}
        try:
            watch = self._watch(source, stabilize_time, label, deployment, device)
            home = self._current_pose(watch, min(timeout, max(5.0, 3 * min(watch.detector.max_silence, 10.0))))
            for index, stop in enumerate(stops):
                deadline = self.clock() + timeout
                try:
                    self._move(deployment, device, source, camera, stop)
                    shot = self._grab_when_still(watch, camera, deadline, self.clock(), stop, discarded)
                    shot.stop = stop
                    shots.append(shot)
                except CameraCredentialsRefused:
                    raise
                except (CaptureFailed, CameraFault) as exc:
                    failed.append({"index": index, "stop": list(stop), "reason": str(exc)})
                if progress is not None:
                    progress(index + 1, len(stops))
            summary = self._summary(watch, source, camera, discarded)
        finally:
            try:
                home_report = self._return_home(deployment, device, source, camera, home, timeout)
            finally:
                source.stop()
                _close(camera)
        summary["home"] = home_report
        if not shots:
            reasons = "; ".join(f"stop {f['stop']}: {f['reason']}" for f in failed)
            raise CaptureFailed(f"{label}: all {len(stops)} {mode.value} stops failed: {reasons}")
        return self._write(deployment, device, kind, mode, started, shots, failed, summary)

    def _current_pose(self, watch: TelemetryWatch, wait: float) -> Pose | None:
        """Where the camera is now (to put it back afterwards); None when telemetry is silent."""
        deadline = self.clock() + wait
        watch.wait_sample_after(-math.inf, deadline)
        return watch.newest.pose() if watch.newest is not None else None

    def _move(
        self,
        deployment: Deployment,
        device: Device,
        source: TelemetrySource,
        camera: CameraControl,
        stop: tuple[float, float, float],
    ) -> None:
        yaw, pitch, zoom = stop
        publish = getattr(source, "publish_command", None)
        if device.camera.ptz == "mqtt" and callable(publish):
            # the telemetry connection reaches the site's broker (port-forwarded in kubectl mode)
            template = device.camera.mqtt_command_template
            if template:
                publish(deployment.command_topic(device.id), yaw, pitch, zoom, template=template)
            else:
                publish(deployment.command_topic(device.id), yaw, pitch, zoom)
        else:
            camera.move_absolute(yaw, pitch, zoom)

    def _arrived(self, stop: tuple[float, float, float]) -> Callable[[StabilityStatus], str | None]:
        tol = self.arrival_tolerance_deg

        def check(status: StabilityStatus) -> str | None:
            pose = status.mean_pose
            if pose is None:
                return "no pose reported"
            errors = (abs(wrap_deg(pose.yaw - stop[0])), abs(pose.pitch - stop[1]))
            zoom_off = abs(pose.zoom - stop[2]) > ARRIVAL_TOLERANCE_ZOOM * max(1.0, stop[2])
            if max(errors) > tol or zoom_off:
                return (
                    f"it did not reach the commanded pose yaw {stop[0]:.2f} pitch {stop[1]:.2f} "
                    f"zoom {stop[2]:.2f} (telemetry reports {_pose_text(pose)})"
                )
            return None

        return check

    def _return_home(
        self,
        deployment: Deployment,
        device: Device,
        source: TelemetrySource,
        camera: CameraControl,
        home: Pose | None,
        timeout: float,
    ) -> dict[str, Any]:
        if home is None:
            return {"returned": False, "reason": "the starting pose was unknown (no telemetry before the tour)"}
        report: dict[str, Any] = {"pose": {"yaw": home.yaw, "pitch": home.pitch, "zoom": home.zoom}}
        try:
            self._move(deployment, device, source, camera, (home.yaw, home.pitch, home.zoom))
        except CameraFault as exc:
            return {**report, "returned": False, "reason": f"return command failed: {exc}"}
        check = self._arrived((home.yaw, home.pitch, home.zoom))
        deadline = self.clock() + min(timeout, 60.0)
        watch = self._watch(source, HOME_STILL_SECONDS, f"device {device.id}", deployment, device)
        while True:
            status = watch.status()
            if status.mean_pose is not None and check(status) is None and status.stable:
                return {**report, "returned": True}
            if self.clock() >= deadline:
                return {
                    **report,
                    "returned": False,
                    "reason": f"commanded home, not confirmed by telemetry ({status.reason})",
                }
            self.sleep(POLL_SECONDS)

    # ------------------------------------------------------------------ grabbing

    def _grab_when_still(
        self,
        watch: TelemetryWatch,
        camera: CameraControl,
        deadline: float,
        started: float,
        stop: tuple[float, float, float] | None,
        discarded: list[str],
    ) -> _Shot:
        """Wait for stillness, grab, and keep the frame only if telemetry stayed still across it
        and a second grab after the confirmation shows the same picture."""
        accept = self._arrived(stop) if stop is not None else None
        # A frame grabbed soon after telemetry last changed: the picture must not move between it and
        # the kept frame. With frozen telemetry the head can move long before the grab (a jump every
        # second) and hold still across the grab and its check, which alone would not see it.
        still_view: list[tuple[np.ndarray, float]] = []

        def grab_still_view(status: StabilityStatus) -> None:
            since = status.since
            if since is None or self.clock() - since < self.confirm_seconds:
                return
            if still_view and still_view[0][1] >= since:
                return  # already have one of this stillness
            at = self.clock()
            still_view[:] = [(camera.grab()[0], at)]

        while True:
            watch.wait_stable(deadline, accept, started=started, on_poll=grab_still_view)
            grab_start = self.clock()
            image, jpeg = camera.grab()
            stacked = burst_size(image, self.low_light_frames)
            if stacked > 1:
                # the burst is inside the grab: telemetry must hold still across all of it
                image = stack_frames([image, *(camera.grab()[0] for _ in range(stacked - 1))])
                jpeg = encode_jpeg(image, STACKED_JPEG_QUALITY)
            grab_end = self.clock()
            confirm_until = grab_end + self.confirm_seconds
            # the confirmation belongs to a grab already made: it may run past the deadline
            got_sample = watch.wait_sample_after(
                confirm_until, confirm_until + min(watch.detector.max_silence, self.max_silence)
            )
            status = watch.status()
            refusal = accept(status) if accept and status.stable else None
            if (
                got_sample
                and status.stable
                and status.since is not None
                and status.since <= grab_start
                and refusal is None
            ):
                earlier = still_view[0] if still_view and still_view[0][1] >= status.since else None
                moved = self._image_moved(camera, image, grab_start, earlier)
                if moved is None:
                    return _Shot(image, jpeg, status, (grab_start + grab_end) / 2.0, stacked=stacked)
                discarded.append(f"frame at {_utc(grab_start).isoformat()} discarded: {moved}")
                if self.clock() >= deadline:
                    raise CaptureFailed(
                        f"{watch.label}: no frame could be kept within the "
                        f"{round(deadline - started, 1):g} s timeout: {moved}; {len(discarded)} "
                        f"frames discarded; {watch.describe(self.clock())}"
                    )
                continue
            why = (
                "no telemetry after the grab"
                if not got_sample
                else refusal or f"telemetry moved during or right after the grab ({status.reason})"
            )
            discarded.append(f"frame at {_utc(grab_start).isoformat()} discarded: {why}")
            if self.clock() >= deadline:
                raise CaptureFailed(
                    f"{watch.label}: a frame was grabbed but telemetry did not stay still across it "
                    f"({why}) and the {round(deadline - started, 1):g} s timeout ran out; "
                    f"{watch.describe(self.clock())}"
                )

    def _image_moved(
        self,
        camera: CameraControl,
        first: np.ndarray,
        first_at: float,
        still_view: tuple[np.ndarray, float] | None = None,
    ) -> str | None:
        """Why the frame cannot be trusted although telemetry held still, or None: the picture moved
        since telemetry last changed (`still_view`, grabbed then), or right after the grab."""
        if still_view is not None:
            shift = image_motion_px(still_view[0], first)
            if shift > self.image_motion_px:
                amount = "changed completely" if math.isinf(shift) else f"shifted {shift:.1f} px"
                return (
                    f"the image moved while telemetry stayed still (frozen telemetry?): it {amount} "
                    f"between a frame grabbed once telemetry held still and this one "
                    f"{first_at - still_view[1]:.1f} s later (more than {self.image_motion_px:g} px allowed)"
                )
        second, _ = camera.grab()
        shift = image_motion_px(first, second)
        if shift <= self.image_motion_px:
            return None
        amount = "changed completely" if math.isinf(shift) else f"shifted {shift:.1f} px"
        return (
            f"the image moved while telemetry stayed still (frozen telemetry?): it {amount} "
            f"between two grabs {self.clock() - first_at:.1f} s apart (more than "
            f"{self.image_motion_px:g} px allowed)"
        )

    # ------------------------------------------------------------------ helpers

    def _find(self, device_id: str) -> tuple[Deployment, Device]:
        try:
            return self.fleet.find(device_id)
        except KeyError as exc:
            raise CaptureFailed(str(exc.args[0])) from None

    def _watch(
        self, source: TelemetrySource, stabilize_time: float, label: str, deployment: Deployment, device: Device
    ) -> TelemetryWatch:
        config = deployment.telemetry_of(device)
        limit = config.silence_limit()
        if limit is None:
            max_silence = math.inf
        elif config.max_silence is None:
            max_silence = self.max_silence  # the site's default (2 s periodic)
        else:
            max_silence = limit
        return TelemetryWatch(
            source,
            stabilize_time,
            self.deadband_deg,
            max_silence,
            self.clock,
            self.sleep,
            label,
            hold_last=config.mode == "on_change",
        )

    def _telemetry(self, deployment: Deployment, device: Device, camera: CameraControl) -> TelemetrySource:
        """The device's telemetry: polled from the camera, or the site's stream through its transform."""
        config = deployment.telemetry_of(device)
        if config.source == "poll":
            reader = getattr(camera, "read_position", None)
            if not callable(reader):
                raise CaptureFailed(
                    f"device {device.id}: telemetry.source is poll but its camera client cannot report a position"
                )
            label = f"device {device.id} ({device.camera.protocol})"
            return PollingSource(reader, config.poll_hz, label=label, clock=self.clock)
        source = self.telemetry_factory(deployment, device)
        configure = getattr(source, "configure_telemetry", None)
        if callable(configure):
            configure(config)  # e.g. the MQTT latch: whether a retained message gives the last value
        return TransformedSource(source, config.transform)  # type: ignore[return-value]

    def _summary(
        self, watch: TelemetryWatch, source: TelemetrySource, camera: CameraControl, discarded: list[str]
    ) -> dict:
        summary = watch.detector.summary(self.clock())
        # what the clients saw of the connection (garbage, broker reconnects, restarted forwards)
        counters = [
            (source, "received_count", "received_count"),
            (source, "garbage_count", "garbage_count"),
            (source, "connections", "telemetry_connections"),
            (source, "reresolved", "telemetry_reresolved"),
            (camera, "reresolved", "camera_reresolved"),
        ]
        for client, name, key in counters:
            value = getattr(client, name, None)
            if isinstance(value, int):
                summary[key] = value
        summary["discarded_frames"] = discarded
        return summary

    def _write(
        self,
        deployment: Deployment,
        device: Device,
        kind: CaptureKind,
        mode: CaptureMode,
        started: float,
        shots: list[_Shot],
        failed: list[dict],
        summary: dict,
    ) -> ExtractedCapture:
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{kind.value}-{device.id}-", dir=self.workdir))
        frames: list[Frame] = []
        images: dict[str, bytes] = {}
        for index, shot in enumerate(shots):
            name = f"images/{index:03d}.jpg"
            pose = shot.status.mean_pose
            assert pose is not None  # a stable status always has a mean pose
            height, width = shot.image.shape[:2]
            extra: dict[str, Any] = {
                "stable_for_s": round(shot.status.still_for, 3),
                "telemetry_samples": shot.status.samples,
                "telemetry_spread_deg": shot.status.spread_deg,
            }
            if shot.stacked > 1:
                extra["stacked_frames"] = shot.stacked
            if shot.stop is not None:
                extra["commanded"] = {"yaw": shot.stop[0], "pitch": shot.stop[1], "zoom": shot.stop[2]}
            frames.append(
                Frame(
                    image=name,
                    captured_at=_utc(shot.taken_at),
                    width=width,
                    height=height,
                    telemetry=pose,
                    **_intrinsics(device, pose.zoom, width, height),
                    **extra,
                )
            )
            images[name] = shot.jpeg
        capture = Capture(
            kind=kind,
            deployment_name=deployment.name,
            device_id=device.id,
            mode=mode,
            started_at=_utc(started),
            frames=frames,
        )
        write_capture(folder, capture, images)
        summary["frames"] = len(frames)
        return ExtractedCapture(
            folder=folder,
            capture=capture,
            waited_seconds=self.clock() - started,
            failed_stops=failed,
            telemetry_summary=summary,
        )


def _intrinsics(device: Device, zoom: float, width: int, height: int) -> dict:
    """The frame's intrinsics at its zoom, for the image size actually delivered."""
    intr = device.intrinsics.at_zoom(zoom)
    if intr.hfov_deg is not None:
        return {"hfov_deg": intr.hfov_deg}
    sx, sy = width / intr.width, height / intr.height
    out = {"fx": intr.fx * sx, "fy": (intr.fy or intr.fx) * sy}  # type: ignore[operator]
    if intr.cx is not None:
        out["cx"] = intr.cx * sx
    if intr.cy is not None:
        out["cy"] = intr.cy * sy
    if intr.distortion is not None:
        out["distortion"] = list(intr.distortion)
    return out


MAX_FRAME_SCALE = 2  # a camera may deliver frames up to this much larger than its intrinsics say


def max_frame_size(device: Device) -> tuple[int, int]:
    """The largest frame accepted from a device: its intrinsics' size, scaled (frames of another size
    are used with scaled intrinsics), so a header declaring more is refused before decoding."""
    return device.intrinsics.width * MAX_FRAME_SCALE, device.intrinsics.height * MAX_FRAME_SCALE


def _close(camera: CameraControl) -> None:
    close = getattr(camera, "close", None)
    if callable(close):
        close()


def _probe(camera: CameraControl) -> None:
    """Fail fast on an unreachable camera instead of waiting out the telemetry."""
    probe = getattr(camera, "probe", None)
    if callable(probe):
        probe()
