"""Domain models shared by every layer. Angles in degrees, conventions of conventions.md."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from calmon_core.conventions import camera_matrix, rotation_from_ypr


def utc_now() -> datetime:
    return datetime.now(UTC)


def _finite(value: float, name: str) -> float:
    if value is None or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


class Pose(BaseModel):
    """Orientation as reported by (or commanded to) a device."""

    model_config = ConfigDict(frozen=True, extra="allow")

    yaw: float
    pitch: float
    roll: float = 0.0
    zoom: float = 1.0

    @model_validator(mode="after")
    def _check_finite(self) -> Pose:
        for name in ("yaw", "pitch", "roll", "zoom"):
            _finite(getattr(self, name), name)
        return self

    def rotation(self) -> np.ndarray:
        return rotation_from_ypr(self.yaw, self.pitch, self.roll)

    def angles(self) -> tuple[float, float, float]:
        return (self.yaw, self.pitch, self.roll)


class TelemetrySample(BaseModel):
    """One telemetry message: a pose and the device's timestamp in unix seconds."""

    model_config = ConfigDict(frozen=True)

    timestamp: float
    yaw: float
    pitch: float
    roll: float = 0.0
    zoom: float = 1.0

    def pose(self) -> Pose:
        return Pose(yaw=self.yaw, pitch=self.pitch, roll=self.roll, zoom=self.zoom)


class Intrinsics(BaseModel):
    """Pinhole intrinsics: fx/fy/cx/cy, or a horizontal field of view (conventions.md)."""

    model_config = ConfigDict(frozen=True)

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    hfov_deg: float | None = Field(default=None, gt=0, lt=180)
    fx: float | None = Field(default=None, gt=0)
    fy: float | None = Field(default=None, gt=0)
    cx: float | None = None
    cy: float | None = None
    distortion: list[float] | None = None  # OpenCV k1, k2, p1, p2

    @model_validator(mode="after")
    def _one_of(self) -> Intrinsics:
        if self.hfov_deg is None and self.fx is None:
            raise ValueError("intrinsics need hfov_deg or fx/fy/cx/cy")
        return self

    def matrix(self) -> np.ndarray:
        return camera_matrix(self.width, self.height, self.hfov_deg, self.fx, self.fy, self.cx, self.cy)


class CaptureKind(StrEnum):
    reference = "reference"
    query = "query"


class CaptureMode(StrEnum):
    reference = "reference"
    passive = "passive"
    active = "active"


class Frame(BaseModel):
    """One image of a capture with what the device reported while it was taken."""

    model_config = ConfigDict(extra="allow")

    image: str
    captured_at: datetime
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    hfov_deg: float | None = Field(default=None, gt=0, lt=180)
    fx: float | None = Field(default=None, gt=0)
    fy: float | None = Field(default=None, gt=0)
    cx: float | None = None
    cy: float | None = None
    # OpenCV distortion (k1, k2, p1, p2) of a calibrated lens; absent = the datasheet's pinhole
    distortion: list[float] | None = Field(default=None, max_length=4)
    telemetry: Pose

    @field_validator("image")
    @classmethod
    def _relative_inside(cls, value: str) -> str:
        parts = value.replace("\\", "/").split("/")
        if not value or value.startswith("/") or ".." in parts or ":" in parts[0]:
            raise ValueError(f"image path {value!r} leaves the scan folder")
        return value

    @model_validator(mode="after")
    def _has_intrinsics(self) -> Frame:
        if self.hfov_deg is None and self.fx is None:
            raise ValueError("frame needs hfov_deg or fx/fy/cx/cy")
        for name in ("hfov_deg", "fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if value is not None:
                _finite(value, name)
        for value in self.distortion or []:
            _finite(value, "distortion")
        return self

    def lens(self):
        """The frame's lens as its manifest states it (calmon_core.lens.Lens)."""
        from calmon_core.lens import Lens

        return Lens.from_matrix(self.intrinsics().matrix(), self.width, self.height, self.distortion)

    def intrinsics(self) -> Intrinsics:
        return Intrinsics(
            width=self.width,
            height=self.height,
            hfov_deg=self.hfov_deg,
            fx=self.fx,
            fy=self.fy,
            cx=self.cx,
            cy=self.cy,
        )


CAPTURE_FORMAT = "calmon.capture/1"


class Capture(BaseModel):
    """A scan in calmon.capture/1: the manifest. Images live beside it (capture_format.py)."""

    model_config = ConfigDict(extra="allow")

    format: str = CAPTURE_FORMAT
    kind: CaptureKind
    deployment_name: str
    device_id: str
    mode: CaptureMode
    started_at: datetime
    frames: list[Frame]

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value != CAPTURE_FORMAT:
            raise ValueError(f"unsupported format {value!r}, expected {CAPTURE_FORMAT!r}")
        return value

    @field_validator("deployment_name", "device_id")
    @classmethod
    def _safe(cls, value: str) -> str:
        from calmon_core.layout import check_segment

        return check_segment(value)


class CheckStatus(StrEnum):
    """Outcome of one check, what Slack and the table say about it."""

    ok = "ok"
    breach = "breach"
    inconclusive = "inconclusive"  # captured, but the estimator could not tell
    failed = "failed"  # no usable capture (camera offline, never stable, storage...)


class CalibrationResult(BaseModel):
    """One row of the results table: the outcome of one check of one device."""

    deployment_name: str
    device_id: str
    timestamp: datetime  # when the query was captured (or the check ran, if capture failed)
    check_partition: str  # the schedule's time partition key, e.g. 2026-11-24-13:00
    pitch_offset: float | None = None
    yaw_offset: float | None = None
    roll_offset: float | None = None
    pitch_uncertainty: float | None = None
    yaw_uncertainty: float | None = None
    roll_uncertainty: float | None = None
    mode: str = "passive"
    capture_positions: str = "[]"  # JSON list of reported poses of the query frames
    files_location: str | None = None
    success: bool = False
    status: CheckStatus = CheckStatus.failed
    failure_log: str | None = None
    inliers: int | None = None
    frames_used: int | None = None
    threshold_deg: float = 0.5
    algorithm_version: str = ""
    run_id: str | None = None
    written_at: datetime = Field(default_factory=utc_now)
    # the drift forecast as of this check (calmon_core.forecast): the axis heading to the threshold
    # soonest (else the fastest), its trend and the days until it crosses at that rate
    trend_axis: str | None = None
    trend_deg_per_day: float | None = None
    trend_sigma_deg_per_day: float | None = None
    days_to_threshold: float | None = None
    days_to_threshold_sigma: float | None = None

    def offsets(self) -> dict[str, float | None]:
        return {"yaw": self.yaw_offset, "pitch": self.pitch_offset, "roll": self.roll_offset}

    def check_time(self) -> datetime:
        """The start of the check's time partition (hourly 2026-11-24-13:00, daily 2026-11-24): the
        time the schedule checked for, where `timestamp` is when the frames happened to be still."""
        for form in ("%Y-%m-%d-%H:%M", "%Y-%m-%d"):
            try:
                return datetime.strptime(self.check_partition, form).replace(tzinfo=UTC)
            except ValueError:
                continue
        return self.timestamp

    def uncertainties(self) -> dict[str, float | None]:
        return {
            "yaw": self.yaw_uncertainty,
            "pitch": self.pitch_uncertainty,
            "roll": self.roll_uncertainty,
        }


def json_default(value: Any) -> Any:
    """json.dumps default for models, datetimes and numpy scalars."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
