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

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from calmon_core.config import ConfigError, _pydantic_problems, expand_env
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
    try:
        raw = yaml.safe_load(expand_env(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: top level must be a mapping with 'deployments'"])
    try:
        return FleetSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_pydantic_problems(exc, str(path))) from exc
