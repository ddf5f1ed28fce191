"""Real lenses: focal length, principal point and distortion, per zoom.

One zoom's lens is OpenCV's model (the one every calibration tool writes): a camera ray (x, y, 1)
is distorted in normalised coordinates, x_d = x (1 + k1 r^2 + k2 r^4) + 2 p1 x y + p2 (r^2 + 2 x^2),
y_d likewise, and the pixel is (fx x_d + cx, fy y_d + cy). `Lens.pixel_rays` inverts that
(pixel -> unit ray), `Lens.project` applies it (ray -> pixel); everything in calmon that turns a
pixel into a ray goes through them.

A `LensCalibration` is what the reference scan taught calmon about a device's lens: one fitted
`ZoomLens` per zoom the scan visited (the grid's zoom and the optional zoom sweep). At another zoom
its corrections are interpolated in log zoom (focal length as a scale on the frame's own datasheet
focal length; principal point and distortion as values), held at the ends, with an uncertainty of
the principal point that grows with the distance to the nearest calibrated zoom: the principal
point moves with zoom and cannot be told from a rotation in a single frame.

A site's own calibration (OpenCV camera matrix + distortion coefficients per zoom) comes in through
`CalibrationAtZoom` (devices.yaml `intrinsics.calibration`) and reaches the estimator as each
frame's fx/fy/cx/cy + `distortion`; the reference scan's fit starts from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

NEWTON_ITERATIONS = 5
# how far the principal point may move per doubling of zoom where the scan did not visit
# (fraction of the image width; real PTZ optics: a few pixels of 1280 per doubling)
PRINCIPAL_DRIFT_PER_DOUBLING = 0.002
# between calibrated zooms the interpolated principal point is trusted to this (fraction of width)
PRINCIPAL_INTERPOLATION_SIGMA = 0.0004


@dataclass(frozen=True)
class Lens:
    """One zoom's intrinsics for one image size (pixels, OpenCV pixel-centre convention)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    @classmethod
    def from_matrix(cls, k: np.ndarray, width: int, height: int, distortion=None) -> Lens:
        d = list(distortion or []) + [0.0] * 4
        return cls(width, height, float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), *map(float, d[:4]))

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def distortion(self) -> np.ndarray:
        """OpenCV's distCoeffs (k1, k2, p1, p2)."""
        return np.array([self.k1, self.k2, self.p1, self.p2])

    @property
    def is_pinhole(self) -> bool:
        return self.k1 == 0.0 and self.k2 == 0.0 and self.p1 == 0.0 and self.p2 == 0.0

    def scaled_focal(self, scale: float) -> Lens:
        return replace(self, fx=self.fx * scale, fy=self.fy * scale)

    def resized(self, width: int, height: int) -> Lens:
        """The same optics sampled at another image size (distortion is in normalised units)."""
        sx, sy = width / self.width, height / self.height
        return replace(
            self,
            width=width,
            height=height,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
        )

    def _distort(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r2 = x * x + y * y
        radial = 1.0 + r2 * (self.k1 + self.k2 * r2)
        xd = x * radial + 2 * self.p1 * x * y + self.p2 * (r2 + 2 * x * x)
        yd = y * radial + self.p1 * (r2 + 2 * y * y) + 2 * self.p2 * x * y
        return xd, yd

    def normalised(self, uv: np.ndarray) -> np.ndarray:
        """Undistorted normalised coordinates (x, y) of pixels (Newton inversion of the model)."""
        uv = np.asarray(uv, float).reshape(-1, 2)
        xd = (uv[:, 0] - self.cx) / self.fx
        yd = (uv[:, 1] - self.cy) / self.fy
        if self.is_pinhole:
            return np.column_stack([xd, yd])
        k1, k2, p1, p2 = self.k1, self.k2, self.p1, self.p2
        r2 = xd * xd + yd * yd
        x, y = xd / (1.0 + r2 * (k1 + k2 * r2)), yd / (1.0 + r2 * (k1 + k2 * r2))
        for _ in range(NEWTON_ITERATIONS):  # Newton on the forward model: quadratic convergence
            r2 = x * x + y * y
            radial = 1.0 + r2 * (k1 + k2 * r2)
            ex = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) - xd
            ey = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y - yd
            g = 2.0 * (k1 + 2.0 * k2 * r2)  # d radial / d x = g x
            jxx = radial + g * x * x + 2 * p1 * y + 6 * p2 * x
            jxy = g * x * y + 2 * p1 * x + 2 * p2 * y
            jyy = radial + g * y * y + 6 * p1 * y + 2 * p2 * x
            det = jxx * jyy - jxy * jxy
            x = x - (jyy * ex - jxy * ey) / det
            y = y - (jxx * ey - jxy * ex) / det
        return np.column_stack([x, y])

    def pixel_rays(self, uv: np.ndarray) -> np.ndarray:
        """Unit camera rays (OpenCV camera frame) of pixels."""
        xy = self.normalised(uv)
        rays = np.column_stack([xy, np.ones(len(xy))])
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)

    def project(self, rays_cam: np.ndarray) -> np.ndarray:
        """Pixels of camera-frame rays (NaN behind the camera)."""
        rays_cam = np.asarray(rays_cam, float).reshape(-1, 3)
        z = rays_cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(z > 1e-9, rays_cam[:, 0] / z, np.nan)
            y = np.where(z > 1e-9, rays_cam[:, 1] / z, np.nan)
        xd, yd = self._distort(x, y)
        return np.column_stack([self.fx * xd + self.cx, self.fy * yd + self.cy])

    def to_json_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "fx": round(self.fx, 4),
            "fy": round(self.fy, 4),
            "cx": round(self.cx, 4),
            "cy": round(self.cy, 4),
            "k1": round(self.k1, 6),
            "k2": round(self.k2, 6),
            "p1": round(self.p1, 7),
            "p2": round(self.p2, 7),
        }

    @classmethod
    def from_json_dict(cls, d: dict) -> Lens:
        return cls(
            int(d["width"]),
            int(d["height"]),
            *(float(d[k]) for k in ("fx", "fy", "cx", "cy")),
            *(float(d.get(k, 0.0)) for k in ("k1", "k2", "p1", "p2")),
        )


def nominal_focal_scale(lens: Lens, nominal: Lens) -> float:
    return lens.fx / nominal.fx


@dataclass(frozen=True)
class ZoomLens:
    """The lens the reference scan fitted at one zoom, relative to its frames' datasheet intrinsics."""

    zoom: float
    lens: Lens  # at the scan's image size
    focal_scale: float  # fitted focal / the manifest's focal at this zoom
    frames: int  # reference frames at this zoom
    rms_px: float = 0.0
    principal_sigma: float = 0.0  # fitted principal point's uncertainty (fraction of width)

    def to_json_dict(self) -> dict:
        return {
            "zoom": self.zoom,
            "focal_scale": round(self.focal_scale, 6),
            "frames": self.frames,
            "rms_px": round(self.rms_px, 4),
            "principal_sigma": round(self.principal_sigma, 6),
            **self.lens.to_json_dict(),
        }

    @classmethod
    def from_json_dict(cls, d: dict) -> ZoomLens:
        return cls(
            float(d["zoom"]),
            Lens.from_json_dict(d),
            float(d["focal_scale"]),
            int(d["frames"]),
            float(d.get("rms_px", 0.0)),
            float(d.get("principal_sigma", 0.0)),
        )


@dataclass(frozen=True)
class LensAtFrame:
    """The lens calmon uses for one frame, and how far it trusts its principal point."""

    lens: Lens
    principal_sigma_px: float  # 1-sigma of the principal point (pixels of this frame)
    source: str  # "calibrated" (at a zoom the scan visited), "interpolated", "extrapolated", "nominal"


@dataclass(frozen=True)
class LensCalibration:
    """Zoom -> lens, from the reference scan's bundle adjustment (see module docstring)."""

    zooms: tuple[ZoomLens, ...]

    def to_json_dict(self) -> dict:
        return {"model": "OPENCV", "zooms": [z.to_json_dict() for z in self.zooms]}

    @classmethod
    def from_json_dict(cls, d: dict | None) -> LensCalibration | None:
        if not d or not d.get("zooms"):
            return None
        return cls(tuple(ZoomLens.from_json_dict(z) for z in d["zooms"]))

    def at(self, zoom: float, nominal: Lens) -> LensAtFrame:
        """The lens at `zoom` for a frame whose manifest gives `nominal` (its size and focal)."""
        nodes = sorted(self.zooms, key=lambda z: z.zoom)
        lz = math.log(max(zoom, 1e-6))
        logs = np.array([math.log(z.zoom) for z in nodes])

        def interp(values: list[float]) -> float:
            return float(np.interp(lz, logs, values))

        # pixel quantities are stored at the scan's size; carry them as fractions of the width
        scale = interp([z.focal_scale for z in nodes])
        dcx = interp([(z.lens.cx - (z.lens.width - 1) / 2) / z.lens.width for z in nodes])
        dcy = interp([(z.lens.cy - (z.lens.height - 1) / 2) / z.lens.width for z in nodes])
        k1 = interp([z.lens.k1 for z in nodes])
        k2 = interp([z.lens.k2 for z in nodes])
        p1 = interp([z.lens.p1 for z in nodes])
        p2 = interp([z.lens.p2 for z in nodes])
        w, h = nominal.width, nominal.height
        lens = Lens(
            w,
            h,
            nominal.fx * scale,
            nominal.fy * scale,
            (w - 1) / 2 + dcx * w,
            (h - 1) / 2 + dcy * w,
            k1,
            k2,
            p1,
            p2,
        )
        gap = float(np.min(np.abs(logs - lz))) / math.log(2.0)
        fitted = interp([z.principal_sigma for z in nodes])
        if gap < 0.02:
            source, sigma = "calibrated", fitted
        elif logs[0] <= lz <= logs[-1]:
            source, sigma = "interpolated", math.hypot(fitted, PRINCIPAL_INTERPOLATION_SIGMA)
        else:
            source, sigma = "extrapolated", math.hypot(fitted, PRINCIPAL_DRIFT_PER_DOUBLING * gap)
        return LensAtFrame(lens, sigma * w, source)


def uncalibrated(nominal: Lens) -> LensAtFrame:
    """No reference calibration: the manifest's lens, with the principal point's datasheet doubt."""
    return LensAtFrame(nominal, 0.0, "nominal")


def zoom_sweep_poses(yaws: list[float], pitches: list[float]) -> list[tuple[float, float]]:
    """(yaw, pitch) of the zoom sweep's poses at each extra zoom: between the grid's yaws at the
    middle of its pitches, where a narrow view overlaps several grid frames."""
    ys = sorted(yaws)
    pitch = (min(pitches) + max(pitches)) / 2
    mids = [(a + b) / 2 for a, b in zip(ys, ys[1:], strict=False)] or ys
    return [(y, pitch) for y in mids]


# --------------------------------------------------------------------------- devices.yaml


class CalibrationAtZoom(BaseModel):
    """A site's own calibration at one zoom, OpenCV's form (cv2.calibrateCamera's outputs):
    camera_matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] for image size (width, height) of the
    device, dist_coeffs [k1, k2, p1, p2] (a fifth k3 must be 0: calmon's model has no k3)."""

    model_config = ConfigDict(extra="forbid")

    zoom: float = Field(gt=0)
    camera_matrix: list[list[float]]
    dist_coeffs: list[float] = Field(default_factory=list, max_length=5)

    @field_validator("camera_matrix")
    @classmethod
    def _matrix(cls, value: list[list[float]]) -> list[list[float]]:
        if len(value) != 3 or any(len(row) != 3 for row in value):
            raise ValueError("must be 3x3 [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]")
        if not all(math.isfinite(v) for row in value for v in row):
            raise ValueError("must hold finite numbers")
        if value[0][0] <= 0 or value[1][1] <= 0:
            raise ValueError(f"fx and fy must be > 0, got {value[0][0]} and {value[1][1]}")
        if value[0][1] != 0 or value[1][0] != 0 or value[2] != [0, 0, 1]:
            raise ValueError("must have the form [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew)")
        return value

    @field_validator("dist_coeffs")
    @classmethod
    def _coeffs(cls, value: list[float]) -> list[float]:
        if not all(math.isfinite(v) for v in value):
            raise ValueError("must hold finite numbers")
        if len(value) == 5 and value[4] != 0:
            raise ValueError("k3 (the fifth coefficient) is not supported; give [k1, k2, p1, p2]")
        if any(abs(v) > 2 for v in value[:2]):
            raise ValueError(f"k1/k2 of {value[:2]} are beyond any PTZ lens (|k| <= 2)")
        return value

    def lens(self, width: int, height: int) -> Lens:
        m = self.camera_matrix
        return Lens(width, height, m[0][0], m[1][1], m[0][2], m[1][2], *(list(self.dist_coeffs[:4]) + [0.0] * 4)[:4])


def calibration_at_zoom(calibrations: list[CalibrationAtZoom], zoom: float, width: int, height: int) -> Lens:
    """A site calibration at any zoom: log-focal and value interpolation between its zooms."""
    nodes = sorted(calibrations, key=lambda c: c.zoom)
    lenses = [c.lens(width, height) for c in nodes]
    if len(nodes) == 1:
        lens = lenses[0]
        return lens.scaled_focal(zoom / nodes[0].zoom)
    lz = math.log(zoom)
    logs = [math.log(c.zoom) for c in nodes]

    def interp(values):
        return float(np.interp(lz, logs, values))

    f = math.exp(interp([math.log(x.fx) for x in lenses]))
    aspect = interp([x.fy / x.fx for x in lenses])
    if lz < logs[0] or lz > logs[-1]:  # focal length keeps scaling with zoom beyond the table
        end = 0 if lz < logs[0] else -1
        f = lenses[end].fx * zoom / nodes[end].zoom
    return Lens(
        width,
        height,
        f,
        f * aspect,
        interp([x.cx for x in lenses]),
        interp([x.cy for x in lenses]),
        *(interp([getattr(x, k) for x in lenses]) for k in ("k1", "k2", "p1", "p2")),
    )


def calibration_markdown(calibration: LensCalibration | None) -> str:
    """The fitted lens as a table for people: one row per calibrated zoom."""
    if calibration is None:
        return "No lens fitted: the reference scan's frames did not constrain one; the datasheet's pinhole is used."
    rows = [
        "| zoom | frames | focal vs datasheet | fx px | centre px (cx, cy) | k1 | k2 | p1 | p2 | rms px |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for z in sorted(calibration.zooms, key=lambda z: z.zoom):
        lens = z.lens
        rows.append(
            f"| {z.zoom:g} | {z.frames} | {100 * (z.focal_scale - 1):+.2f}% | {lens.fx:.1f} "
            f"| ({lens.cx:.1f}, {lens.cy:.1f}) of ({lens.width}×{lens.height}) | {lens.k1:+.4f} | {lens.k2:+.4f} "
            f"| {lens.p1:+.5f} | {lens.p2:+.5f} | {z.rms_px:.3f} |"
        )
    return "\n".join(rows)
