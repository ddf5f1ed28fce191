"""Scenes the simulated cameras look at, and the pinhole renderer (conventions.md).

A scene is an equirectangular panorama (centre column = north, top row = straight up), or a plain
photograph placed as a distant plane facing north. Rendering is one cv2.remap per view.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import cv2
import numpy as np

from calmon_core.conventions import camera_matrix, rotation_from_ypr

SCENES_ENV = "CALMON_SCENES_DIR"


def default_scenes_dir() -> Path:
    """../shared/data/scenes from the repo root, unless CALMON_SCENES_DIR says otherwise."""
    env = os.environ.get(SCENES_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "scenes"


class Scene:
    """A source image and how rays map onto it."""

    def __init__(self, image: np.ndarray, kind: str = "equirect", plane_hfov_deg: float = 90.0,
                 label: str = ""):
        if kind not in ("equirect", "plane"):
            raise ValueError(f"unknown scene kind {kind!r}")
        self.image = image
        self.kind = kind
        self.plane_hfov_deg = plane_hfov_deg
        self.label = label

    @property
    def source_pixel_deg(self) -> float:
        """Angular size of one source pixel, to keep renders from over-zooming."""
        w = self.image.shape[1]
        if self.kind == "equirect":
            return 360.0 / w
        return self.plane_hfov_deg / w

    def remap_coords(self, rays_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.image.shape[:2]
        x, y, z = rays_world[..., 0], rays_world[..., 1], rays_world[..., 2]
        if self.kind == "equirect":
            lon = np.arctan2(x, y)  # east of north
            lat = np.arctan2(z, np.hypot(x, y))
            map_x = (lon / (2 * np.pi) + 0.5) * w - 0.5
            map_y = (0.5 - lat / np.pi) * h - 0.5
            return map_x.astype(np.float32), map_y.astype(np.float32)
        f = (w / 2.0) / math.tan(math.radians(self.plane_hfov_deg) / 2.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            map_x = f * x / y + (w - 1) / 2.0
            map_y = (h - 1) / 2.0 - f * z / y
        behind = y <= 1e-6
        map_x[behind] = -1e6
        map_y[behind] = -1e6
        return map_x.astype(np.float32), map_y.astype(np.float32)

    def render(self, yaw: float, pitch: float, roll: float, hfov_deg: float,
               width: int = 1280, height: int = 720, k: np.ndarray | None = None) -> np.ndarray:
        """The BGR view of a pinhole camera at the given true orientation."""
        k = camera_matrix(width, height, hfov_deg) if k is None else k
        m = rotation_from_ypr(yaw, pitch, roll) @ np.linalg.inv(k)
        u = np.arange(width, dtype=np.float32)
        v = np.arange(height, dtype=np.float32)
        # rays = M @ [u, v, 1] built by broadcasting, float32 to stay fast
        m32 = m.astype(np.float32)
        rays = (
            m32[:, 0][None, None, :] * u[None, :, None]
            + m32[:, 1][None, None, :] * v[:, None, None]
            + m32[:, 2][None, None, :]
        )
        map_x, map_y = self.remap_coords(rays)
        border = cv2.BORDER_WRAP if self.kind == "equirect" else cv2.BORDER_CONSTANT
        return cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=border)


def synthetic_panorama(seed: int = 0, width: int = 4096, height: int = 2048) -> np.ndarray:
    """A seeded, procedurally generated panorama: sky, mountains, skyline, harbour, labelled SYNTHETIC.

    Rich in corners at several scales so the estimator has texture at every zoom.
    """
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    horizon = height // 2
    # sky gradient with clouds (low texture, like a real sky)
    for row in range(horizon):
        t = row / horizon
        img[row, :] = (235 - 60 * t, 200 - 40 * t, 150 - 30 * t)
    for _ in range(40):
        c = (int(rng.integers(0, width)), int(rng.integers(horizon // 5, horizon - 200)))
        axes = (int(rng.integers(40, 200)), int(rng.integers(10, 40)))
        cv2.ellipse(img, c, axes, 0, 0, 360, (245, 245, 245), -1, cv2.LINE_AA)
    # far mountains
    ridge = horizon - 120 + np.cumsum(rng.normal(0, 3, width))
    ridge = ridge - np.linspace(0, ridge[-1] - ridge[0], width)  # wraps seamlessly
    for x in range(width):
        top = int(np.clip(ridge[x], horizon - 300, horizon))
        img[top:horizon, x] = (110, 120, 105)
    # skyline: buildings with irregular windows
    x = 0
    while x < width:
        bw = int(rng.integers(40, 180))
        bh = int(rng.integers(60, 420))
        color = tuple(int(c) for c in rng.integers(50, 200, 3))
        x0, x1 = x, min(width, x + bw)
        cv2.rectangle(img, (x0, horizon - bh), (x1, horizon), color, -1)
        wy = horizon - bh + 8
        while wy < horizon - 12:
            wx = x0 + 5
            while wx < x1 - 8:
                if rng.random() < 0.7:
                    wc = tuple(int(c) for c in rng.integers(0, 255, 3))
                    ww, wh = int(rng.integers(3, 9)), int(rng.integers(4, 12))
                    cv2.rectangle(img, (wx, wy), (wx + ww, wy + wh), wc, -1)
                wx += int(rng.integers(8, 16))
            wy += int(rng.integers(12, 22))
        if rng.random() < 0.3:  # antennas and roof details
            ax = int(rng.integers(x0, max(x0 + 1, x1)))
            cv2.line(img, (ax, horizon - bh), (ax, horizon - bh - int(rng.integers(10, 60))), (30, 30, 30), 2)
        x += bw + int(rng.integers(0, 25))
    # harbour: water with piers, boats and buoys
    for row in range(horizon, height):
        t = (row - horizon) / (height - horizon)
        img[row, :] = (120 - 60 * t, 90 - 40 * t, 40 - 20 * t)
    ripple = rng.normal(0, 10, (height - horizon, width, 1))
    img[horizon:] = np.clip(img[horizon:].astype(np.int16) + ripple.astype(np.int16), 0, 255).astype(np.uint8)
    for _ in range(400):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(horizon + 10, height - 10))
        size = int(rng.integers(3, 12 + (cy - horizon) // 12))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        shape = rng.integers(0, 3)
        if shape == 0:
            cv2.rectangle(img, (cx, cy), (cx + 2 * size, cy + size), color, -1)
        elif shape == 1:
            cv2.circle(img, (cx, cy), size // 2 + 1, color, -1, cv2.LINE_AA)
        else:
            pts = rng.integers(-size, size, (5, 2)) + np.array([cx, cy])
            cv2.fillPoly(img, [pts.astype(np.int32)], color, cv2.LINE_AA)
    # small-scale speckle everywhere below the sky for fine corners at narrow zoom
    speckle = rng.integers(0, 2, (height, width // 2, 1)).repeat(2, axis=1) * rng.integers(-12, 12)
    img[horizon - 420:] = np.clip(img[horizon - 420:].astype(np.int16) + speckle[horizon - 420:], 0, 255).astype(np.uint8)
    for i in range(12):  # the label, at several headings so every view shows it is synthetic
        cv2.putText(img, f"SYNTHETIC {seed}", (i * width // 12 + 40, horizon + 160),
                    cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 4, cv2.LINE_AA)
    return img


@functools.lru_cache(maxsize=16)
def load_scene(spec: str, plane_hfov_deg: float = 90.0) -> Scene:
    """A scene from 'synthetic:<seed>', a file path, or a bare file name in the scenes folder.

    Photos whose aspect is not 2:1 are placed as a distant plane facing north.
    """
    if spec.startswith("synthetic:"):
        seed = int(spec.split(":", 1)[1] or 0)
        return Scene(synthetic_panorama(seed), "equirect", label=spec)
    path = Path(spec)
    if not path.is_absolute() and not path.exists():
        path = default_scenes_dir() / spec
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"scene {spec!r}: cannot read image {path}")
    h, w = image.shape[:2]
    kind = "equirect" if abs(w / h - 2.0) < 0.01 else "plane"
    return Scene(image, kind, plane_hfov_deg=plane_hfov_deg, label=path.name)
