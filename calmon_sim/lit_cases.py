"""Test cases under changed light: reference grids and query frames rendered by calmon_sim.lighting.

Like calmon_sim.cases, but a scan can be collected while the camera has an offset (frames rendered
at reported + offset, telemetry = reported), which is what re-collected references and bank
entries look like in the field.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np

from calmon_core.capture_format import decode_image, encode_jpeg, write_capture
from calmon_core.models import Capture, CaptureKind, CaptureMode, Frame, Pose
from calmon_sim.cases import T0, QueryView, view_size
from calmon_sim.lighting import Conditions, render_frame
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
) -> Path:
    """A reference grid (every pitch x every yaw) under the conditions, collected while the camera
    was `offset` off (true = reported + offset)."""
    conditions = conditions or Conditions()
    rng = rng or np.random.default_rng(0)
    frames, images = [], {}
    for n, (p, y) in enumerate((p, y) for p in pitches for y in yaws):
        img = render_frame(scene, conditions, y + offset[0], p + offset[1], offset[2], hfov_deg, width, height, rng)
        name = f"images/{n:03d}.jpg"
        images[name] = encode_jpeg(img, 95)
        frames.append(_frame(name, n, width, height, hfov_deg, (y, p, 0.0), 1.0, day))
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
) -> tuple[Frame, np.ndarray]:
    """One query frame at the view's true pose under the conditions, as the camera's JPEG decodes."""
    w, h = view_size(scene, view.hfov_deg, width, height)
    img = render_frame(scene, conditions, *view.true, view.hfov_deg, w, h, rng)
    img = decode_image(encode_jpeg(img, jpeg_quality), "query")
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
) -> Path:
    """A query capture of the views under the conditions (telemetry = reported poses)."""
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
        started_at=T0 + timedelta(days=1),
        frames=frames,
    )
    return write_capture(folder, cap, images)
