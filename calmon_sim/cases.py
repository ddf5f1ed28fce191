"""Estimation test cases with known truth: a rendered reference scan and query captures.

The reference is rendered at its reported poses (true = reported); a query is rendered at
true = reported + offset and written with the REPORTED pose as telemetry, so the estimator should
find exactly `offset`. With a `lens` (calmon_sim.fleet_spec.SimLens) every view is rendered through
that true lens while the manifest keeps the datasheet's hfov (zoom = reference hfov / hfov).
Used by tests and benchmarks/accuracy.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from calmon_core.capture_format import encode_jpeg, write_capture
from calmon_core.conventions import wrap_deg
from calmon_core.lens import zoom_sweep_poses
from calmon_core.models import Capture, CaptureKind, CaptureMode, Frame, Pose
from calmon_sim.degrade import degrade_level
from calmon_sim.fleet_spec import SimLens
from calmon_sim.scene import Scene

T0 = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


@dataclass
class QueryView:
    reported: tuple[float, float, float]  # yaw, pitch, roll the telemetry says
    offset: tuple[float, float, float]  # true - reported
    hfov_deg: float

    @property
    def true(self) -> tuple[float, float, float]:
        return tuple(
            wrap_deg(r + o) if i != 1 else r + o  # type: ignore[return-value]
            for i, (r, o) in enumerate(zip(self.reported, self.offset, strict=True))
        )


def view_size(scene: Scene, hfov_deg: float, width: int, height: int) -> tuple[int, int]:
    """Fewer pixels at narrow zoom, so one rendered pixel stays at least half a source pixel
    (otherwise the view is blur, not zoom)."""
    max_width = hfov_deg / (0.5 * scene.source_pixel_deg)
    if width <= max_width:
        return width, height
    w = int(max(160, round(max_width)))
    return w, int(round(w * height / width))


def _frame(name: str, when: datetime, w: int, h: int, hfov: float, pose: tuple[float, ...], zoom: float) -> Frame:
    return Frame(
        image=name,
        captured_at=when,
        width=w,
        height=h,
        hfov_deg=hfov,
        telemetry=Pose(yaw=pose[0], pitch=pose[1], roll=pose[2], zoom=zoom),
    )


def _hfov_at_zoom(hfov_deg: float, zoom: float) -> float:
    """The datasheet's hfov at a zoom (the same rule as write_query's zoom = reference hfov / hfov)."""
    return hfov_deg / zoom


def write_reference(
    folder: str | Path,
    scene: Scene,
    yaws: list[float],
    pitches: list[float],
    *,
    hfov_deg: float = 60.0,
    width: int = 1280,
    height: int = 720,
    level: int = 0,
    rng: np.random.Generator | None = None,
    device_id: str = "cam-01",
    lens: SimLens | None = None,
    zooms: list[float] | None = None,
) -> Path:
    """A reference scan: every yaw x every pitch at zoom 1 (hfov_deg), then the zoom sweep's poses
    (calmon_core.lens.zoom_sweep_poses) at each of `zooms`, rendered at the reported pose."""
    rng = rng or np.random.default_rng(0)
    lens = lens or SimLens()
    frames, images = [], {}
    stops = [(y, p, 1.0) for p in pitches for y in yaws]
    stops += [(y, p, z) for z in zooms or [] for y, p in zoom_sweep_poses(yaws, pitches)]
    for n, (y, p, z) in enumerate(stops):
        hfov = _hfov_at_zoom(hfov_deg, z)
        w, h = (width, height) if z == 1.0 else view_size(scene, hfov, width, height)
        k, dist = lens.camera(z, hfov, w, h, width)
        img = degrade_level(scene.render(y, p, 0.0, hfov, w, h, k=k, distortion=dist), level, rng)
        name = f"images/{n:03d}.jpg"
        images[name] = encode_jpeg(img, 95)
        frames.append(_frame(name, T0 + timedelta(seconds=4 * n), w, h, hfov, (y, p, 0.0), z))
    capture = Capture(
        kind=CaptureKind.reference,
        deployment_name="bench",
        device_id=device_id,
        mode=CaptureMode.reference,
        started_at=T0,
        frames=frames,
    )
    return write_capture(folder, capture, images)


def write_query(
    folder: str | Path,
    scene: Scene,
    views: list[QueryView],
    *,
    width: int = 1280,
    height: int = 720,
    level: int = 0,
    rng: np.random.Generator | None = None,
    mode: str | None = None,
    device_id: str = "cam-01",
    reference_hfov_deg: float = 60.0,
    lens: SimLens | None = None,
) -> Path:
    """A query capture: each view rendered at its true pose, telemetry = its reported pose."""
    rng = rng or np.random.default_rng(0)
    lens = lens or SimLens()
    frames, images = [], {}
    start = T0 + timedelta(days=1)
    for n, v in enumerate(views):
        w, h = view_size(scene, v.hfov_deg, width, height)
        ty, tp, tr = v.true
        k, dist = lens.camera(reference_hfov_deg / v.hfov_deg, v.hfov_deg, w, h, width)
        img = degrade_level(scene.render(ty, tp, tr, v.hfov_deg, w, h, k=k, distortion=dist), level, rng)
        name = f"images/{n:03d}.jpg"
        images[name] = img if level else encode_jpeg(img, 95)
        frames.append(
            _frame(
                name, start + timedelta(seconds=4 * n), w, h, v.hfov_deg, v.reported, reference_hfov_deg / v.hfov_deg
            )
        )
    mode = mode or ("active" if len(views) > 1 else "passive")
    capture = Capture(
        kind=CaptureKind.query,
        deployment_name="bench",
        device_id=device_id,
        mode=CaptureMode(mode),
        started_at=start,
        frames=frames,
    )
    return write_capture(folder, capture, images)


def random_view(
    rng: np.random.Generator,
    yaws: list[float],
    pitches: list[float],
    *,
    hfov_range: tuple[float, float] = (15.0, 60.0),
    max_offset: float = 3.0,
) -> QueryView:
    """A reported pose inside the grid's cover, a true offset per angle in [-max, max] (with exact
    zeros and values near +-0.5 mixed in), and a zoom."""
    yaw = float(rng.uniform(min(yaws), max(yaws)))
    pitch = float(rng.uniform(min(pitches), max(pitches)))
    offsets = []
    for _ in range(3):
        kind = rng.random()
        if kind < 0.15:
            offsets.append(0.0)
        elif kind < 0.35:
            offsets.append(float(rng.choice([-1, 1]) * rng.uniform(0.4, 0.6)))
        else:
            offsets.append(float(rng.uniform(-max_offset, max_offset)))
    hfov = float(rng.uniform(*hfov_range))
    return QueryView((wrap_deg(yaw), pitch, 0.0), tuple(offsets), hfov)  # type: ignore[arg-type]
