"""Test cases under changed light: reference grids and query frames rendered by calmon_sim.lighting.

Like calmon_sim.cases, but a scan can be collected while the camera has an offset (frames rendered
at reported + offset, telemetry = reported), which is what re-collected references and bank
entries look like in the field. With a `lens` (calmon_sim.fleet_spec.SimLens) every view is
rendered through that true lens while the manifest keeps the datasheet's hfov, as in
calmon_sim.cases. With a `burst` a low-light view is what calmon's capture keeps of it: the mean of
that many of the camera's snapshots, each with its own sensor noise (calmon_core.stacking).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np

from calmon_core.capture_format import decode_image, encode_jpeg, write_capture
from calmon_core.lens import zoom_sweep_poses
from calmon_core.models import Capture, CaptureKind, CaptureMode, Frame, Pose
from calmon_core.stacking import burst_size, stack_frames
from calmon_sim.cases import T0, QueryView, view_size
from calmon_sim.fleet_spec import SimLens
from calmon_sim.lighting import Conditions, lit_scene, sensor
from calmon_sim.scene import Scene


def _frame(name: str, n: int, w: int, h: int, hfov: float, pose, zoom: float, day: int) -> Frame:
    return Frame(
        image=name,
        captured_at=T0 + timedelta(days=day, seconds=4 * n),
        width=w,
        height=h,
        hfov_deg=hfov,
        telemetry=Pose(yaw=pose[0], pitch=pose[1], roll=pose[2], zoom=zoom),
    )


def captured_view(
    scene: Scene,
    conditions: Conditions,
    pose: tuple[float, float, float],
    hfov_deg: float,
    width: int,
    height: int,
    rng: np.random.Generator,
    *,
    k: np.ndarray | None = None,
    distortion: tuple[float, ...] | None = None,
    jpeg_quality: int = 90,
    burst: int = 1,
) -> np.ndarray:
    """The view as calmon's capture keeps it: the camera's JPEG snapshot decoded, or, when calmon
    takes a burst of `burst` at this light (stacking.burst_size), the mean of that many snapshots."""
    world = lit_scene(scene, conditions).render(*pose, hfov_deg, width, height, k=k, distortion=distortion)

    def snapshot() -> np.ndarray:
        return decode_image(encode_jpeg(sensor(world, conditions, rng), jpeg_quality), "snapshot")

    first = snapshot()
    n = burst_size(first, burst)
    return first if n == 1 else stack_frames([first, *(snapshot() for _ in range(n - 1))])


def write_scan(
    folder: str | Path,
    scene: Scene,
    yaws: list[float],
    pitches: list[float],
    *,
    conditions: Conditions | None = None,
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    width: int = 1280,
    height: int = 720,
    hfov_deg: float = 60.0,
    rng: np.random.Generator | None = None,
    day: int = 0,
    device_id: str = "cam-01",
    lens: SimLens | None = None,
    zooms: list[float] | None = None,
    burst: int = 1,
) -> Path:
    """A reference grid (every pitch x every yaw) under the conditions, collected while the camera
    was `offset` off (true = reported + offset), then the zoom sweep's poses
    (calmon_core.lens.zoom_sweep_poses) at each of `zooms`, each view as calmon's capture keeps it
    (captured_view: the camera's JPEG, low-light views as bursts of `burst`)."""
    conditions = conditions or Conditions()
    rng = rng or np.random.default_rng(0)
    lens = lens or SimLens()
    frames, images = [], {}
    stops = [(y, p, 1.0) for p in pitches for y in yaws]
    stops += [(y, p, z) for z in zooms or [] for y, p in zoom_sweep_poses(yaws, pitches)]
    for n, (y, p, z) in enumerate(stops):
        hfov = hfov_deg / z
        w, h = (width, height) if z == 1.0 else view_size(scene, hfov, width, height)
        k, dist = lens.camera(z, hfov, w, h, width)
        true = (y + offset[0], p + offset[1], offset[2])
        img = captured_view(scene, conditions, true, hfov, w, h, rng, k=k, distortion=dist, burst=burst)
        name = f"images/{n:03d}.jpg"
        images[name] = encode_jpeg(img, 95)
        frames.append(_frame(name, n, w, h, hfov, (y, p, 0.0), z, day))
    cap = Capture(
        kind=CaptureKind.reference,
        deployment_name="bench",
        device_id=device_id,
        mode=CaptureMode.reference,
        started_at=T0 + timedelta(days=day),
        frames=frames,
    )
    return write_capture(folder, cap, images)


def query_frame(
    scene: Scene,
    conditions: Conditions,
    view: QueryView,
    n: int = 0,
    rng: np.random.Generator | None = None,
    *,
    width: int = 1280,
    height: int = 720,
    jpeg_quality: int = 90,
    reference_hfov_deg: float = 60.0,
    lens: SimLens | None = None,
    burst: int = 1,
) -> tuple[Frame, np.ndarray]:
    """One query frame at the view's true pose under the conditions, as calmon's capture keeps it
    (captured_view: the camera's JPEG decoded, or a low-light burst's mean)."""
    w, h = view_size(scene, view.hfov_deg, width, height)
    k, dist = (lens or SimLens()).camera(reference_hfov_deg / view.hfov_deg, view.hfov_deg, w, h, width)
    rng = rng or np.random.default_rng()
    img = captured_view(
        scene,
        conditions,
        view.true,
        view.hfov_deg,
        w,
        h,
        rng,
        k=k,
        distortion=dist,
        jpeg_quality=jpeg_quality,
        burst=burst,
    )
    frame = _frame(f"images/{n:03d}.jpg", n, w, h, view.hfov_deg, view.reported, reference_hfov_deg / view.hfov_deg, 1)
    return frame, img


def write_query(
    folder: str | Path,
    scene: Scene,
    conditions: Conditions,
    views: list[QueryView],
    *,
    rng: np.random.Generator | None = None,
    width: int = 1280,
    height: int = 720,
    device_id: str = "cam-01",
    day: float = 1.0,
) -> Path:
    """A query capture of the views under the conditions (telemetry = reported poses), taken
    `day` days after the reference scan's day 0."""
    rng = rng or np.random.default_rng(0)
    frames, images = [], {}
    for n, view in enumerate(views):
        frame, img = query_frame(scene, conditions, view, n, rng, width=width, height=height)
        frames.append(frame)
        images[frame.image] = encode_jpeg(img, 95)
    cap = Capture(
        kind=CaptureKind.query,
        deployment_name="bench",
        device_id=device_id,
        mode=CaptureMode.active if len(views) > 1 else CaptureMode.passive,
        started_at=T0 + timedelta(days=day),
        frames=frames,
    )
    return write_capture(folder, cap, images)
