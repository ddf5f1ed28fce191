"""The simulated fleet file (fleet.yaml): deployments, each with simulated PTZ cameras.

Validation errors name the file and the key (e.g. `fleet.yaml: deployments[0].devices[1].drift`),
like calmon's own devices.yaml. Angles follow shared/docs/conventions.md (degrees).
"""

from __future__ import annotations

import inspect
import math
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from calmon_core.config import ConfigError, _pydantic_problems, read_config_yaml
from calmon_core.layout import UnsafeNameError, check_segment
from calmon_sim.degrade import degrade

# Fault switches a camera understands (start options in the fleet file, POST /faults at runtime).
FAULT_FLAGS = ("offline", "frozen_telemetry", "never_settle", "garbage_mqtt", "corrupt_jpeg")
FAULT_KEYS = (*FAULT_FLAGS, "slow_seconds")
DEGRADATION_KEYS = tuple(name for name, p in inspect.signature(degrade).parameters.items() if p.kind is p.KEYWORD_ONLY)
DEFAULT_TOPIC_TEMPLATE = "calmon/{deployment}/{device}/telemetry"
DEFAULT_COMMAND_TOPIC_TEMPLATE = "calmon/{deployment}/{device}/ptz"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return value


class StartPose(_Strict):
    yaw: float = 0.0
    pitch: float = 0.0
    zoom: float = Field(default=1.0, gt=0)

    _fin = field_validator("yaw", "pitch", "zoom")(_finite)


class TrueOffset(_Strict):
    """The hidden calibration error: true minus reported, per angle."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    _fin = field_validator("yaw", "pitch", "roll")(_finite)


class Drift(_Strict):
    """A slow ramp of the hidden offset, in degrees per day."""

    yaw_deg_per_day: float = 0.0
    pitch_deg_per_day: float = 0.0
    roll_deg_per_day: float = 0.0

    _fin = field_validator("yaw_deg_per_day", "pitch_deg_per_day", "roll_deg_per_day")(_finite)


class SimReferenceGrid(_Strict):
    """Written into devices.yaml as the device's reference_grid."""

    yaws: list[float] = Field(default_factory=lambda: [-60.0, -30.0, 0.0, 30.0, 60.0], min_length=1)
    pitches: list[float] = Field(default_factory=lambda: [-10.0, 10.0], min_length=1)
    zoom: float = Field(default=1.0, gt=0)
    zooms: list[float] = []  # the zoom sweep (calmon_core.config.ReferenceGrid)


class SimLens(_Strict):
    """The lens a camera really has (calmon is never told): values per zoom, interpolated smoothly
    (monotone cubic in zoom, held beyond the ends). The default is a perfect pinhole with the
    datasheet's focal lengths.

    focal_scale_by_zoom: true focal length / the datasheet's (hfov_by_zoom), e.g. {1: 1.01, 4: 0.985}
    k1_by_zoom, k2_by_zoom: OpenCV radial terms (normalised coordinates)
    principal_offset_by_zoom: principal point minus the image centre, pixels at `resolution`
    p1, p2: OpenCV tangential terms (decentring), the same at every zoom
    """

    focal_scale_by_zoom: dict[float, float] = {}
    k1_by_zoom: dict[float, float] = {}
    k2_by_zoom: dict[float, float] = {}
    principal_offset_by_zoom: dict[float, tuple[float, float]] = {}
    p1: float = 0.0
    p2: float = 0.0

    @field_validator("focal_scale_by_zoom")
    @classmethod
    def _scales(cls, value: dict[float, float]) -> dict[float, float]:
        for zoom, scale in value.items():
            if not (zoom > 0 and 0.5 < scale < 2.0):
                raise ValueError(f"{zoom}: {scale} must be zoom > 0 and 0.5 < scale < 2")
        return value

    @field_validator("k1_by_zoom", "k2_by_zoom")
    @classmethod
    def _radial(cls, value: dict[float, float]) -> dict[float, float]:
        for zoom, k in value.items():
            if not (zoom > 0 and math.isfinite(k) and abs(k) <= 1.0):
                raise ValueError(f"{zoom}: {k} must be zoom > 0 and |k| <= 1")
        return value

    @staticmethod
    def _at(table: dict, zoom: float, default):
        if not table:
            return default
        zooms = sorted(table)
        values = np.array([table[z] for z in zooms], dtype=float)
        if len(zooms) == 1:
            return values[0]
        from scipy.interpolate import PchipInterpolator

        z = min(max(zoom, zooms[0]), zooms[-1])
        return PchipInterpolator(zooms, values, axis=0)(z)

    def camera(self, zoom: float, nominal_hfov_deg: float, width: int, height: int, full_width: int):
        """(camera matrix, distortion) the camera truly has at `zoom`, for an image of width x height
        (a view rendered at fewer pixels than the sensor's full_width keeps the same optics)."""
        from calmon_core.conventions import camera_matrix

        k = camera_matrix(width, height, nominal_hfov_deg)
        scale = float(self._at(self.focal_scale_by_zoom, zoom, 1.0))
        dx, dy = np.asarray(self._at(self.principal_offset_by_zoom, zoom, (0.0, 0.0)), float) * (width / full_width)
        k[0, 0] *= scale
        k[1, 1] *= scale
        k[0, 2] += dx
        k[1, 2] += dy
        dist = (
            float(self._at(self.k1_by_zoom, zoom, 0.0)),
            float(self._at(self.k2_by_zoom, zoom, 0.0)),
            self.p1,
            self.p2,
        )
        return k, dist


# lenses of the benchmark and the demo, as the issue describes real PTZ optics: "typical" with k1 to
# -0.15 at the wide end shrinking with zoom, the principal point up to 10 px off and moving with zoom,
# the focal table 2% off; "strong" with k1 -0.3 and more of everything
LENS_PRESETS: dict[str, SimLens] = {
    "none": SimLens(),
    "typical": SimLens(
        focal_scale_by_zoom={1.0: 1.012, 1.7: 0.995, 2.6: 0.982, 4.0: 1.02},
        k1_by_zoom={1.0: -0.15, 1.5: -0.09, 2.0: -0.055, 3.0: -0.025, 4.0: -0.012},
        k2_by_zoom={1.0: 0.04, 2.0: 0.012, 4.0: 0.0},
        principal_offset_by_zoom={1.0: (6.0, -4.0), 2.0: (1.5, 2.0), 3.0: (-3.0, 5.5), 4.0: (-6.0, 8.0)},
        p1=0.0004,
        p2=-0.0003,
    ),
    "strong": SimLens(
        focal_scale_by_zoom={1.0: 0.975, 1.8: 1.02, 2.8: 0.99, 4.0: 1.03},
        k1_by_zoom={1.0: -0.3, 1.5: -0.2, 2.0: -0.12, 3.0: -0.06, 4.0: -0.03},
        k2_by_zoom={1.0: 0.09, 2.0: 0.03, 4.0: 0.005},
        principal_offset_by_zoom={1.0: (-9.0, 7.0), 2.0: (-2.0, -4.0), 3.0: (6.0, -8.0), 4.0: (12.0, -10.0)},
        p1=-0.0008,
        p2=0.0006,
    ),
}


class SimSceneChange(_Strict):
    """A static change of the world, e.g. a parked truck centred at (yaw, pitch), size in degrees."""

    kind: Literal["truck"] = "truck"
    yaw: float = 0.0
    pitch: float = -3.0
    width_deg: float = Field(default=8.0, gt=0, le=90)
    height_deg: float = Field(default=3.0, gt=0, le=90)


class SimLightingSpec(_Strict):
    """Time of day and season (calmon_sim.lighting). The sun at (latitude, longitude) sets the
    regime from the simulated clock: it starts at `start` (UTC; the wall clock when omitted) and
    runs `speed` times faster than real time. `regime` / `season` pin them instead."""

    latitude: float = Field(default=48.85, ge=-90, le=90)
    longitude: float = Field(default=2.35, ge=-180, le=180)
    start: datetime | None = None
    speed: float = Field(default=1.0, gt=0, le=1e6)
    regime: Literal["day", "dusk", "night"] | None = None
    season: Literal["summer", "autumn", "winter", "spring"] | None = None
    ir_gain: float = Field(default=1.0, gt=0, le=4)
    changes: list[SimSceneChange] = []

    @field_validator("start")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("start must name its time zone, e.g. 2026-12-01T18:00:00Z")
        return value


class SimDeviceSpec(_Strict):
    id: str
    scene: str = "synthetic:0"  # 'synthetic:<seed>', a path, or a file name in the scenes folder
    # used instead when `scene` is a file that does not exist here (e.g. without ../shared)
    scene_fallback: str | None = None
    scene_plane_hfov_deg: float = Field(default=90.0, gt=0, lt=180)  # for photos placed as a plane
    resolution: tuple[int, int] = (1280, 720)
    hfov_by_zoom: dict[float, float] = Field(default_factory=lambda: {1.0: 60.0})
    start_pose: StartPose = StartPose()
    true_offset: TrueOffset = TrueOffset()
    drift: Drift = Drift()
    patrol: bool = False
    # patrol: after a random pause in this range (s) the camera moves to a random pose within
    # patrol_range_deg of its start pose (yaw, pitch)
    patrol_pause_s: tuple[float, float] = (4.0, 10.0)
    patrol_range_deg: tuple[float, float] = (30.0, 5.0)
    # after an explicit PTZ command the patrol leaves the camera alone this long (a tour's "park
    # time"), so active captures driven by calmon are not disturbed
    patrol_hold_s: float = Field(default=60.0, ge=0)
    slew_speed_deg_s: float = Field(default=90.0, gt=0)
    zoom_speed_per_s: float = Field(default=2.0, gt=0)
    telemetry_rate_hz: float = Field(default=10.0, gt=0, le=100)
    telemetry_noise_deg: float = Field(default=0.0, ge=0)
    jpeg_quality: int = Field(default=90, ge=1, le=100)
    degradation: dict[str, Any] = {}
    faults: dict[str, Any] = {}
    mode: Literal["passive", "active"] = "passive"
    active_ptz_stops: list[tuple[float, float, float]] = []
    reference_grid: SimReferenceGrid = SimReferenceGrid()
    # the true lens: a preset name from LENS_PRESETS or the tables themselves
    lens: SimLens | Literal["none", "typical", "strong"] = SimLens()
    # the dialect the camera speaks (calmon_sim.dialects, calmon_sim.onvif_service) and the
    # credentials it demands (HTTP Digest, ONVIF WS-Security); none: open to anyone
    protocol: Literal["http", "vapix", "isapi", "onvif"] = "http"
    username: str | None = None
    password: str | None = None
    onvif_degrees: bool = True  # the PTZ node offers SphericalPositionSpaceDegrees (else generic only)
    refuse_absolute_move: bool = False  # a head that only knows presets / continuous moves
    clock_skew_s: float = 0.0  # the camera's clock minus the true time (WS-Security timestamps)
    # telemetry as sites send it: periodic, on_change (retained, only when the pose changes),
    # retained_only (one retained message at start, then silence), none (position by polling only)
    telemetry_mode: Literal["periodic", "on_change", "retained_only", "none"] = "periodic"
    telemetry_step_deg: float = Field(default=0.01, gt=0)  # resolution of the published angles
    telemetry_units: Literal["degrees", "tenths"] = "degrees"
    telemetry_tilt_inverted: bool = False  # published tilt grows downwards
    lighting: SimLightingSpec | None = None  # None: always a summer day

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        try:
            return check_segment(value, "device id")
        except UnsafeNameError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("resolution")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] <= 0 or value[1] <= 0:
            raise ValueError(f"width and height must be > 0, got {list(value)}")
        return value

    @field_validator("hfov_by_zoom")
    @classmethod
    def _hfovs(cls, value: dict[float, float]) -> dict[float, float]:
        if not value:
            raise ValueError("needs at least one zoom: hfov pair")
        for zoom, hfov in value.items():
            if not (zoom > 0 and 0 < hfov < 180):
                raise ValueError(f"{zoom}: {hfov} must be zoom > 0 and 0 < hfov < 180")
        return value

    @field_validator("degradation")
    @classmethod
    def _degradation_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(DEGRADATION_KEYS))
        if unknown:
            raise ValueError(f"unknown degradation {unknown} (expected some of {list(DEGRADATION_KEYS)})")
        return value

    @field_validator("faults")
    @classmethod
    def _fault_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_faults(value)

    @model_validator(mode="after")
    def _patrol_ranges(self) -> SimDeviceSpec:
        lo, hi = self.patrol_pause_s
        if not 0 <= lo <= hi:
            raise ValueError(f"patrol_pause_s must be [min, max] with 0 <= min <= max, got {[lo, hi]}")
        return self

    def true_lens(self) -> SimLens:
        return LENS_PRESETS[self.lens] if isinstance(self.lens, str) else self.lens

    def zoom_limits(self) -> tuple[float, float]:
        """Zoom range the camera accepts: the calibrated range, or up to 30x for a single entry."""
        zooms = sorted(self.hfov_by_zoom)
        return (zooms[0], zooms[-1]) if len(zooms) > 1 else (zooms[0], zooms[0] * 30.0)


def check_faults(faults: dict[str, Any]) -> dict[str, Any]:
    """Validated fault switches: known keys only, booleans, slow_seconds a number >= 0."""
    unknown = sorted(set(faults) - set(FAULT_KEYS))
    if unknown:
        raise ValueError(f"unknown fault {unknown} (expected some of {list(FAULT_KEYS)})")
    out: dict[str, Any] = {}
    for key, value in faults.items():
        if key == "slow_seconds":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 3600:
                raise ValueError(f"slow_seconds must be a number of seconds >= 0, got {value!r}")
            out[key] = float(value)
        else:
            if not isinstance(value, bool):
                raise ValueError(f"fault {key} must be true or false, got {value!r}")
            out[key] = value
    return out


class SimDeploymentSpec(_Strict):
    name: str
    topic_template: str = DEFAULT_TOPIC_TEMPLATE
    command_topic_template: str = DEFAULT_COMMAND_TOPIC_TEMPLATE
    devices: list[SimDeviceSpec] = []

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        try:
            return check_segment(value, "deployment name")
        except UnsafeNameError as exc:
            raise ValueError(str(exc)) from None


class FleetSpec(_Strict):
    deployments: list[SimDeploymentSpec] = []

    @model_validator(mode="after")
    def _unique(self) -> FleetSpec:
        names = [d.name for d in self.deployments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate deployment names {dupes}")
        ids = [dev.id for dep in self.deployments for dev in dep.devices]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate device ids {dupes}; they must be unique across the fleet")
        return self

    def devices(self) -> list[tuple[SimDeploymentSpec, SimDeviceSpec]]:
        return [(dep, dev) for dep in self.deployments for dev in dep.devices]


def load_fleet_spec(path: str | Path) -> FleetSpec:
    """Read and validate a fleet file; every problem is reported at once as a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: file not found"])
    raw, substituted = read_config_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: top level must be a mapping with 'deployments'"])
    try:
        return FleetSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_pydantic_problems(exc, str(path), substituted=substituted)) from exc


# the small reference grid and frame size the tests, benchmarks and screenshot script give their
# simulated cameras: enough overlap for a reference map, few enough poses to scan in seconds
SMALL_GRID = {"yaws": [-40, -10, 20, 50], "pitches": [-6, 6], "zoom": 1.0}
SMALL_RESOLUTION = (640, 360)


def small_camera(
    id: str,  # noqa: A002 - the fleet file's key
    scene_seed: int,
    yaw: float = 0.0,
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    resolution: tuple[int, int] = SMALL_RESOLUTION,
    **extra: Any,
) -> dict:
    """A fleet-file device entry: a synthetic scene, the small grid, looking at `yaw`, with a
    hidden `offset` (true - reported, degrees); `extra` adds or overrides fleet-file keys."""
    return {
        "id": id,
        "scene": f"synthetic:{scene_seed}",
        "resolution": list(resolution),
        "hfov_by_zoom": {1.0: 60.0, 4.0: 15.0},
        "start_pose": {"yaw": yaw, "pitch": 0.0, "zoom": 1.0},
        "true_offset": dict(zip(("yaw", "pitch", "roll"), offset, strict=True)),
        "reference_grid": SMALL_GRID,
        **extra,
    }
