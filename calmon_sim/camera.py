"""One simulated PTZ camera: hidden calibration offset, finite-speed slewing, patrol, telemetry,
frames rendered at the TRUE pose, and faults on demand.

"Mechanical" pose = where the camera believes it points (what healthy telemetry reports).
True pose = mechanical + hidden offset (+ drift since the last step), per angle (conventions.md:
offset = true - reported). Frames show the true pose; telemetry shows the mechanical pose, quantised
to 0.01 degree like real PTZ heads, so a still camera reports exactly equal values.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from calmon_core.config import DeviceIntrinsics
from calmon_core.conventions import wrap_deg
from calmon_core.models import Pose
from calmon_sim.degrade import degrade
from calmon_sim.fleet_spec import FAULT_FLAGS, SimDeviceSpec, check_faults
from calmon_sim.lighting import Conditions, lighting_from_spec, lit_scene, sensor
from calmon_sim.scene import Scene, load_scene

log = logging.getLogger(__name__)

TELEMETRY_STEP_DEG = 0.01  # resolution of reported angles and zoom
SECONDS_PER_DAY = 86400.0
NEVER_SETTLE_JITTER_DEG = 0.05
NEVER_SETTLE_LIMIT_DEG = 0.5
RENDER_CACHE_KEY_DEG = 1e-4  # true poses closer than this reuse the last render


def quantise(value: float, step: float = TELEMETRY_STEP_DEG) -> float:
    return round(round(value / step) * step, 6)


@dataclass
class _Segment:
    """A straight move from `start` to `end` (yaw, pitch, zoom) starting at t0; each axis moves at
    its own constant speed and stops when it arrives (yaw takes the short way round)."""

    start: tuple[float, float, float]
    end: tuple[float, float, float]
    t0: float
    slew_speed: float
    zoom_speed: float

    def _deltas(self) -> tuple[float, float, float]:
        return (
            wrap_deg(self.end[0] - self.start[0]),
            self.end[1] - self.start[1],
            self.end[2] - self.start[2],
        )

    def duration(self) -> float:
        dy, dp, dz = self._deltas()
        return max(abs(dy) / self.slew_speed, abs(dp) / self.slew_speed, abs(dz) / self.zoom_speed)

    def at(self, t: float) -> tuple[float, float, float]:
        elapsed = max(0.0, t - self.t0)
        out = []
        for s, d, speed in zip(
            self.start, self._deltas(), (self.slew_speed, self.slew_speed, self.zoom_speed), strict=True
        ):
            step = min(abs(d), speed * elapsed)
            out.append(s + math.copysign(step, d))
        return wrap_deg(out[0]), out[1], out[2]


class SimCamera:
    """A simulated PTZ camera. The HTTP API is served by calmon_sim.http_api once start() runs;
    telemetry is published by the fleet's single publisher (calmon_sim.fleet)."""

    def __init__(
        self,
        spec: SimDeviceSpec,
        deployment: str,
        host: str = "127.0.0.1",
        port: int = 0,
        scene: Scene | None = None,
        seed: int | None = None,
    ):
        self.spec = spec
        self.device_id = spec.id
        self.deployment = deployment
        self.host = host
        self.width, self.height = spec.resolution
        self.intrinsics = DeviceIntrinsics(width=self.width, height=self.height, hfov_by_zoom=dict(spec.hfov_by_zoom))
        self.scene = scene or _load_device_scene(spec)  # the world by summer daylight
        self.lighting = lighting_from_spec(spec.lighting)
        narrowest = min(spec.hfov_by_zoom.values())
        magnification = self.scene.magnification(narrowest, self.width)
        if magnification > 4:
            log.info(
                "device %s: at %.1f deg HFOV one pixel of scene %s spans %.1f view pixels; "
                "narrow-zoom frames will look soft (see calmon_sim.scene)",
                spec.id,
                narrowest,
                self.scene.label,
                magnification,
            )
        self._lock = threading.RLock()
        self._rng = random.Random(seed if seed is not None else zlib.crc32(spec.id.encode()))
        self._np_rng = np.random.default_rng(self._rng.getrandbits(32))
        sp = spec.start_pose
        start = (wrap_deg(sp.yaw), self._clamp_pitch(sp.pitch), self._clamp_zoom(sp.zoom))
        self._segment = _Segment(start, start, time.time(), spec.slew_speed_deg_s, spec.zoom_speed_per_s)
        self._home = start
        self._commanded_at = 0.0
        self._patrol = spec.patrol
        self._patrol_idle_until = time.time() + self._patrol_pause()
        self._offset = (spec.true_offset.yaw, spec.true_offset.pitch, spec.true_offset.roll)
        self._drift = (spec.drift.yaw_deg_per_day, spec.drift.pitch_deg_per_day, spec.drift.roll_deg_per_day)
        self._drift_since = time.time()
        self._faults: dict[str, Any] = {}
        self._frozen: tuple[float, float, float, float] | None = None
        self._jitter = (0.0, 0.0)
        self._render_key: tuple | None = None
        self._render: np.ndarray | None = None
        self._render_lock = threading.Lock()
        self.next_telemetry_due = 0.0
        self._garbage_count = 0
        self._last_published: tuple[float, ...] | None = None
        self._published_retained = False
        from calmon_sim.http_api import CameraHttpServer  # the server needs this class

        self._http = CameraHttpServer(self, host, port)
        self.port: int = self._http.port
        advertised = "127.0.0.1" if host in ("0.0.0.0", "") else host
        self.base_url = f"http://{advertised}:{self.port}"
        if spec.faults:
            self.set_faults(**spec.faults)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SimCamera:
        """Serve the HTTP API (unless offline)."""
        self._http.wanted = True
        self._http.sync()
        return self

    def stop(self) -> None:
        self._http.wanted = False
        self._http.sync()

    # ------------------------------------------------------------------ motion

    def _clamp_pitch(self, pitch: float) -> float:
        return max(-90.0, min(90.0, pitch))

    def _clamp_zoom(self, zoom: float) -> float:
        lo, hi = self.spec.zoom_limits()
        return max(lo, min(hi, zoom))

    def _patrol_pause(self) -> float:
        lo, hi = self.spec.patrol_pause_s
        return self._rng.uniform(lo, hi)

    def _mechanical(self, now: float | None = None) -> tuple[float, float, float]:
        """(yaw, pitch, zoom) the camera believes it is at; advances patrol when it is due."""
        now = time.time() if now is None else now
        with self._lock:
            seg = self._segment
            arrived = seg.t0 + seg.duration()
            patrol_due = max(arrived, self._patrol_idle_until, self._commanded_at + self.spec.patrol_hold_s)
            if self._patrol and now >= patrol_due:
                here = seg.at(now)
                ry, rp = self.spec.patrol_range_deg
                target = (
                    wrap_deg(self._home[0] + self._rng.uniform(-ry, ry)),
                    self._clamp_pitch(self._home[1] + self._rng.uniform(-rp, rp)),
                    here[2],
                )
                self._segment = _Segment(here, target, now, seg.slew_speed, seg.zoom_speed)
                self._patrol_idle_until = now + self._segment.duration() + self._patrol_pause()
                seg = self._segment
            return seg.at(now)

    def move_to(self, yaw: float, pitch: float, zoom: float | None = None) -> None:
        """Absolute PTZ command; the camera slews there at finite speed."""
        for name, v in (("yaw", yaw), ("pitch", pitch), ("zoom", zoom)):
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        now = time.time()
        with self._lock:
            here = self._mechanical(now)
            target = (wrap_deg(yaw), self._clamp_pitch(pitch), here[2] if zoom is None else self._clamp_zoom(zoom))
            self._segment = _Segment(here, target, now, self.spec.slew_speed_deg_s, self.spec.zoom_speed_per_s)
            self._commanded_at = now + self._segment.duration()
            self._patrol_idle_until = self._commanded_at + self._patrol_pause()

    def target(self) -> tuple[float, float, float]:
        """(yaw, pitch, zoom) the head is slewing to (or resting at), after clamping."""
        with self._lock:
            self._mechanical()
            return self._segment.end

    def is_moving(self) -> bool:
        now = time.time()
        with self._lock:
            self._mechanical(now)
            seg = self._segment
            return now < seg.t0 + seg.duration()

    def set_patrol(self, on: bool) -> None:
        with self._lock:
            self._patrol = bool(on)
            self._commanded_at = 0.0
            self._patrol_idle_until = time.time() + self._patrol_pause()

    # ------------------------------------------------------------------ hidden calibration

    def _current_offset(self, now: float) -> tuple[float, float, float]:
        days = (now - self._drift_since) / SECONDS_PER_DAY
        return tuple(o + r * days for o, r in zip(self._offset, self._drift, strict=True))  # type: ignore[return-value]

    def set_true_offset(self, yaw: float, pitch: float, roll: float) -> None:
        """A step change of the hidden offset (drift continues from here at its rate)."""
        with self._lock:
            self._offset = (float(yaw), float(pitch), float(roll))
            self._drift_since = time.time()

    def set_drift(
        self, yaw_deg_per_day: float = 0.0, pitch_deg_per_day: float = 0.0, roll_deg_per_day: float = 0.0
    ) -> None:
        """A slow ramp of the hidden offset from now on (what drifted so far is kept)."""
        with self._lock:
            now = time.time()
            self._offset = self._current_offset(now)
            self._drift_since = now
            self._drift = (float(yaw_deg_per_day), float(pitch_deg_per_day), float(roll_deg_per_day))

    # ------------------------------------------------------------------ faults

    @property
    def faults(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._faults)

    def set_faults(self, **faults: Any) -> None:
        """Switch faults on/off: offline, frozen_telemetry, never_settle, garbage_mqtt, corrupt_jpeg
        (booleans) and slow_seconds (HTTP answer delay). Unnamed faults keep their state."""
        faults = check_faults(faults)
        with self._lock:
            if faults.get("frozen_telemetry") and not self._faults.get("frozen_telemetry"):
                self._frozen = self._telemetry_values(time.time())
            self._faults.update({k: v for k, v in faults.items() if v})
            for key, value in faults.items():
                if not value:
                    self._faults.pop(key, None)
            if not self._faults.get("frozen_telemetry"):
                self._frozen = None
        self._http.sync()  # offline closes the listening socket, clearing it reopens the port

    def clear_faults(self) -> None:
        self.set_faults(**{k: False for k in FAULT_FLAGS}, slow_seconds=0.0)

    @property
    def offline(self) -> bool:
        return bool(self._faults.get("offline"))

    @property
    def slow_seconds(self) -> float:
        return float(self._faults.get("slow_seconds", 0.0))

    # ------------------------------------------------------------------ poses and telemetry

    def _telemetry_values(self, now: float) -> tuple[float, float, float, float]:
        """(yaw, pitch, roll, zoom) as healthy telemetry would report them now."""
        yaw, pitch, zoom = self._mechanical(now)
        roll = 0.0
        if self._faults.get("never_settle"):
            # a bounded random walk that never repeats a value: the detector must not call it still
            self._jitter = tuple(self._jitter_step(j) for j in self._jitter)  # type: ignore[assignment]
            yaw, pitch = yaw + self._jitter[0], pitch + self._jitter[1]
        sigma = self.spec.telemetry_noise_deg
        if sigma > 0:
            yaw += self._rng.gauss(0.0, sigma)
            pitch += self._rng.gauss(0.0, sigma)
            roll += self._rng.gauss(0.0, sigma)
        return (quantise(wrap_deg(yaw)), quantise(pitch), quantise(roll), quantise(zoom))

    def _jitter_step(self, value: float) -> float:
        step = self._rng.choice((-1, 1)) * self._rng.uniform(0.02, NEVER_SETTLE_JITTER_DEG)
        return value + step if abs(value + step) <= NEVER_SETTLE_LIMIT_DEG else value - step

    def reported_pose(self) -> Pose:
        """What telemetry says now (frozen values under the frozen_telemetry fault)."""
        with self._lock:
            values = self._frozen or self._telemetry_values(time.time())
        return Pose(yaw=values[0], pitch=values[1], roll=values[2], zoom=values[3])

    def true_pose(self) -> Pose:
        """Where the camera really points: mechanical pose + hidden offset (+ drift)."""
        now = time.time()
        with self._lock:
            yaw, pitch, zoom = self._mechanical(now)
            oy, op, orl = self._current_offset(now)
        return Pose(yaw=wrap_deg(yaw + oy), pitch=pitch + op, roll=wrap_deg(orl), zoom=zoom)

    @property
    def telemetry_retain(self) -> bool:
        """Whether its MQTT messages are published retained (sites that publish on change do)."""
        return self.spec.telemetry_mode in ("on_change", "retained_only")

    def _site_values(self, values: tuple[float, float, float, float]) -> tuple[float, ...]:
        """The pose as this site writes it: its resolution, units and tilt sign."""
        spec = self.spec
        step = spec.telemetry_step_deg
        yaw, pitch, roll, zoom = (quantise(v, step) for v in values)
        if spec.telemetry_tilt_inverted:
            pitch = -pitch
        if spec.telemetry_units == "tenths":
            return (round((yaw % 360.0) * 10), round(pitch * 10), round(roll * 10), round(zoom * 10))
        return (yaw, pitch, roll, quantise(values[3]))

    def telemetry_payloads(self, now: float) -> list[bytes]:
        """The MQTT payloads this camera publishes at `now` (empty when offline or when its
        telemetry mode has nothing to say): one JSON sample, plus interleaved junk under the
        garbage_mqtt fault."""
        with self._lock:
            if self._faults.get("offline"):
                return []
            mode = self.spec.telemetry_mode
            if mode == "none" or (mode == "retained_only" and self._published_retained):
                return []
            if self._frozen:
                self._mechanical(now)  # the head keeps patrolling on time: only its telemetry froze
            values = self._site_values(self._frozen or self._telemetry_values(now))
            if mode == "on_change" and values == self._last_published:
                return []
            self._last_published = values
            self._published_retained = True
            sample = {
                "yaw": values[0],
                "pitch": values[1],
                "roll": values[2],
                "zoom": values[3],
                "timestamp": round(now, 3),
            }
            out = [json.dumps(sample).encode()]
            if self._faults.get("garbage_mqtt"):
                self._garbage_count += 1
                out.insert(self._garbage_count % 2, _garbage(self._garbage_count, sample))
            return out

    def handle_command(self, payload: bytes) -> None:
        """An MQTT PTZ command {"yaw", "pitch", "zoom"?}; malformed ones are ignored, as a device would."""
        if self.offline:
            return
        try:
            body = json.loads(payload)
            self.move_to(
                float(body["yaw"]), float(body["pitch"]), None if body.get("zoom") is None else float(body["zoom"])
            )
        except (ValueError, KeyError, TypeError):
            return

    # ------------------------------------------------------------------ frames

    def hfov_deg(self, zoom: float) -> float:
        return float(self.intrinsics.at_zoom(zoom).hfov_deg)

    def render_clean(self) -> np.ndarray:
        """The undegraded view at the true pose under the current light (before the sensor's own
        response); the last render is reused while the pose and the light hold."""
        return self._render_lit()[0]

    def _render_lit(self) -> tuple[np.ndarray, Conditions]:
        pose = self.true_pose()
        conditions = self.lighting.conditions()
        key = tuple(round(v / RENDER_CACHE_KEY_DEG) for v in (pose.yaw, pose.pitch, pose.roll, pose.zoom * 100))
        key = (*key, conditions)
        with self._render_lock:
            if key == self._render_key and self._render is not None:
                return self._render, conditions
        scene = lit_scene(self.scene, conditions)
        # through the camera's true lens; what it tells calmon (hfov_deg) stays the datasheet's
        k, dist = self.spec.true_lens().camera(pose.zoom, self.hfov_deg(pose.zoom), self.width, self.height, self.width)
        image = scene.render(pose.yaw, pose.pitch, pose.roll, 0.0, self.width, self.height, k=k, distortion=dist)
        with self._render_lock:
            self._render_key, self._render = key, image
        return image, conditions

    def snapshot_jpeg(self) -> bytes:
        """The current view at the TRUE pose, with the device's degradations, as JPEG bytes."""
        image, conditions = self._render_lit()
        with self._lock:
            rng = np.random.default_rng(self._np_rng.integers(1 << 62))
        image = sensor(image, conditions, rng)
        if self.spec.degradation:
            image = degrade(image, rng, **self.spec.degradation)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.spec.jpeg_quality])
        if not ok:
            raise RuntimeError(f"device {self.device_id}: JPEG encoding failed")
        data = buf.tobytes()
        if self._faults.get("corrupt_jpeg"):
            data = _corrupt(data)
        return data

    def truth(self) -> dict:
        """Ground truth for tests and benchmarks: hidden offset, reported and true poses."""
        now = time.time()
        with self._lock:
            oy, op, orl = self._current_offset(now)
            drift = dict(zip(("yaw_deg_per_day", "pitch_deg_per_day", "roll_deg_per_day"), self._drift, strict=True))
        reported, true = self.reported_pose(), self.true_pose()
        return {
            "device_id": self.device_id,
            "deployment": self.deployment,
            "true_offset": {"yaw": oy, "pitch": op, "roll": orl},
            "drift": drift,
            "reported": reported.model_dump(),
            "true": true.model_dump(),
            "timestamp": now,
        }

    def status(self) -> dict:
        """Health as GET /status shows it."""
        pose = self.reported_pose()
        return {
            "device_id": self.device_id,
            "deployment": self.deployment,
            "pose": pose.model_dump(),
            "moving": self.is_moving(),
            "patrol": self._patrol,
            "faults": self.faults,
            "resolution": [self.width, self.height],
            "hfov_deg": self.hfov_deg(pose.zoom),
            "scene": self.scene.label,
            "lighting": self.lighting.describe(),
        }


def _load_device_scene(spec: SimDeviceSpec) -> Scene:
    try:
        return load_scene(spec.scene, spec.scene_plane_hfov_deg)
    except FileNotFoundError as exc:
        if spec.scene_fallback:
            log.warning("device %s: %s; using fallback scene %s", spec.id, exc, spec.scene_fallback)
            return load_scene(spec.scene_fallback, spec.scene_plane_hfov_deg)
        raise ValueError(f"device {spec.id!r}: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"device {spec.id!r}: scene {spec.scene!r}: {exc}") from exc


def _garbage(n: int, sample: dict) -> bytes:
    """Junk a misbehaving device or bridge puts on the topic: binary, cut-off JSON, wrong types."""
    text = json.dumps(sample)
    kinds = [
        b"\x00\xff\xfe garbage \x13\x37",
        text[: len(text) // 2].encode(),
        json.dumps({"yaw": "north", "pitch": None}).encode(),
        b"[]",
        b"",
        json.dumps({"yaw": sample["yaw"]}).encode(),
    ]
    return kinds[n % len(kinds)]


def _corrupt(data: bytes) -> bytes:
    """A JPEG no decoder accepts: the start marker, then the header garbled and the data cut short."""
    body = bytearray(data[2 : max(64, len(data) // 3)])
    for i in range(0, min(len(body), 600)):
        body[i] ^= 0x5A
    return data[:2] + bytes(body)
