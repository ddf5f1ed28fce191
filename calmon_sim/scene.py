"""Scenes the simulated cameras look at, and the pinhole renderer (conventions.md).

A scene is an equirectangular panorama (centre column = north, top row = straight up), or a plain
photograph placed as a distant plane facing north. Rendering is one cv2.remap per view.

Sharpness at narrow zoom: a view can show no more detail than its source. One source pixel of an
equirectangular image covers 360/W degrees (0.088 deg for 4096-wide files, 0.054 for the 6656-wide
one), while a 1280-wide camera at 15 deg HFOV has 0.0117 deg pixels: a real panorama is magnified
5-8x there and looks soft. The simulated camera keeps its configured resolution anyway (calmon must
cope with soft frames, and the geometry stays exact); magnified views are interpolated bicubically.
The synthetic panorama is generated at 8192x4096 (0.044 deg per pixel, 1:1 with a 1280-wide 60 deg
view) with blocky texture 2-8 source pixels wide, so it still has corners at 4x zoom.
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

    def __init__(self, image: np.ndarray, kind: str = "equirect", plane_hfov_deg: float = 90.0, label: str = ""):
        if kind not in ("equirect", "plane"):
            raise ValueError(f"unknown scene kind {kind!r}")
        self.image = image
        self.kind = kind
        self.plane_hfov_deg = plane_hfov_deg
        self.label = label

    def magnification(self, hfov_deg: float, width: int) -> float:
        """How many rendered pixels one source pixel spans (at the view centre)."""
        return self.source_pixel_deg / (hfov_deg / width)

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

    def render(
        self,
        yaw: float,
        pitch: float,
        roll: float,
        hfov_deg: float,
        width: int = 1280,
        height: int = 720,
        k: np.ndarray | None = None,
        distortion: tuple[float, ...] | None = None,
    ) -> np.ndarray:
        """The BGR view of a camera at the given true orientation: a pinhole, or with `distortion`
        (OpenCV's k1, k2, p1, p2) the lens of camera matrix k."""
        k = camera_matrix(width, height, hfov_deg) if k is None else k
        if distortion is not None and any(distortion):
            cam = _lens_rays(tuple(np.asarray(k, float).ravel()), tuple(float(d) for d in distortion), width, height)
            rays = cam @ rotation_from_ypr(yaw, pitch, roll).T.astype(np.float32)
        else:
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
        # bicubic keeps magnified edges crisper than bilinear for ~2 ms more at 1280x720
        magnified = (
            self.magnification(hfov_deg if k is None else math.degrees(2 * math.atan(width / (2 * k[0, 0]))), width)
            > 1.5
        )
        interpolation = cv2.INTER_CUBIC if magnified else cv2.INTER_LINEAR
        return cv2.remap(self.image, map_x, map_y, interpolation, borderMode=border)


LENS_GRID_STEP = 4  # pixels between exactly undistorted nodes; bilinear between them is good to 0.004 px


@functools.lru_cache(maxsize=6)
def _lens_rays(k: tuple[float, ...], distortion: tuple[float, ...], width: int, height: int) -> np.ndarray:
    """Camera rays (H, W, 3) of every pixel of a distorted lens, by OpenCV's own iterative
    undistortion (run to convergence) on a grid of nodes, interpolated bilinearly in between:
    independent of calmon's lens code. A camera's pixels keep their rays while it turns, so this
    is cached per lens and size."""
    step = LENS_GRID_STEP
    cols = np.arange(0, width - 1 + step, step, dtype=np.float64)
    rows = np.arange(0, height - 1 + step, step, dtype=np.float64)
    u, v = np.meshgrid(cols, rows)
    pts = np.column_stack([u.ravel(), v.ravel()]).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    xy = cv2.undistortPoints(pts, np.array(k).reshape(3, 3), np.array(distortion), None, None, None, criteria)
    coarse = xy.reshape(len(rows), len(cols), 2).astype(np.float32)
    map_u = np.tile(np.arange(width, dtype=np.float32) / step, (height, 1))
    map_v = np.tile((np.arange(height, dtype=np.float32) / step)[:, None], (1, width))
    fine = cv2.remap(coarse, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.concatenate([fine, np.ones((height, width, 1), np.float32)], axis=-1)


SYNTHETIC_SIZE = (8192, 4096)  # 0.044 deg per source pixel: a 1280-wide 60 deg view is 1:1
SYNTHETIC_VERSION = 2  # bump when the generator changes: names the on-disk cache files


def synthetic_panorama(seed: int = 0, width: int = SYNTHETIC_SIZE[0], height: int = SYNTHETIC_SIZE[1]) -> np.ndarray:
    """A seeded, procedurally generated panorama: sky, mountains, skyline, harbour, labelled SYNTHETIC.

    Large structures scale with the panorama; the finest texture (blocky noise of 2, 4 and 8
    pixels, window panes) stays a few source pixels wide, so narrow-zoom views still find corners.
    """
    rng = np.random.default_rng(seed)
    scale = width / 4096.0
    img = np.zeros((height, width, 3), np.uint8)
    horizon = height // 2
    # sky gradient with clouds (low texture, like a real sky)
    t = (np.arange(horizon, dtype=np.float32) / horizon)[:, None]
    img[:horizon] = np.stack([235 - 60 * t, 200 - 40 * t, 150 - 30 * t], -1).astype(np.uint8)
    for _ in range(40):
        c = (int(rng.integers(0, width)), int(rng.integers(horizon // 5, horizon - int(200 * scale))))
        axes = (int(rng.integers(40, 200) * scale), int(rng.integers(10, 40) * scale))
        cv2.ellipse(img, c, axes, 0, 0, 360, (245, 245, 245), -1, cv2.LINE_AA)
    # far mountains: a random-walk ridge that wraps seamlessly at +-180 deg
    ridge = horizon - 120 * scale + np.cumsum(rng.normal(0, 3 * math.sqrt(scale), width))
    ridge = ridge - np.linspace(0, ridge[-1] - ridge[0], width)
    ridge = np.clip(ridge, horizon - 300 * scale, horizon).astype(int)
    rows = np.arange(horizon)[:, None]
    img[:horizon][rows >= ridge[None, :]] = (110, 120, 105)
    # skyline: buildings with irregular windows
    x = 0
    while x < width:
        bw = int(rng.integers(40, 180) * scale)
        bh = int(rng.integers(60, 420) * scale)
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
            top = horizon - bh - int(rng.integers(10, 60) * scale)
            cv2.line(img, (ax, horizon - bh), (ax, top), (30, 30, 30), max(1, int(2 * scale)))
        x += bw + int(rng.integers(0, 25) * scale)
    # harbour: water with piers, boats and buoys
    t = (np.arange(height - horizon, dtype=np.float32) / (height - horizon))[:, None]
    water = np.stack([120 - 60 * t, 90 - 40 * t, 40 - 20 * t], -1)
    ripple = rng.normal(0, 10, (height - horizon, width, 1)).astype(np.float32)
    img[horizon:] = np.clip(water + ripple, 0, 255).astype(np.uint8)
    for _ in range(int(400 * scale)):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(horizon + 10, height - 10))
        size = int((rng.integers(3, 12) + (cy - horizon) / (12 * scale)) * scale)
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        shape = rng.integers(0, 3)
        if shape == 0:
            cv2.rectangle(img, (cx, cy), (cx + 2 * size, cy + size), color, -1)
        elif shape == 1:
            cv2.circle(img, (cx, cy), size // 2 + 1, color, -1, cv2.LINE_AA)
        else:
            pts = rng.integers(-size, size + 1, (5, 2)) + np.array([cx, cy])
            cv2.fillPoly(img, [pts.astype(np.int32)], color, cv2.LINE_AA)
    # fine blocky texture at 2, 4 and 8 source pixels below the sky: corners at every zoom
    top = horizon - int(420 * scale)
    band = np.zeros((height - top, width), np.float32)
    for block, amplitude in ((2, 9.0), (4, 7.0), (8, 6.0)):
        cells = rng.integers(-1, 2, ((height - top) // block + 1, width // block + 1)).astype(np.float32)
        band += amplitude * np.repeat(np.repeat(cells, block, 0), block, 1)[: height - top, :width]
    img[top:] = np.clip(img[top:].astype(np.float32) + band[..., None], 0, 255).astype(np.uint8)
    label = f"SYNTHETIC {seed}"
    font_scale, thickness = 2.0 * scale, max(1, int(4 * scale))
    (text_w, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    copies = max(1, min(12, width // (text_w + int(60 * scale))))
    for i in range(copies):  # the label, at several headings so every view shows it is synthetic
        cv2.putText(
            img,
            label,
            (i * width // copies + int(40 * scale), horizon + int(160 * scale)),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
    return img


def synthetic_cache_dir() -> Path | None:
    """Where generated panoramas are kept between runs ($CALMON_CACHE_DIR, else ~/.cache/calmon);
    None when CALMON_CACHE_DIR is set to an empty string."""
    env = os.environ.get("CALMON_CACHE_DIR")
    if env is not None:
        return Path(env) / "synthetic" if env else None
    return Path.home() / ".cache" / "calmon" / "synthetic"


def cached_synthetic_panorama(seed: int) -> np.ndarray:
    """synthetic_panorama(seed) at the default size, generated once per machine (a few seconds)."""
    folder = synthetic_cache_dir()
    width, height = SYNTHETIC_SIZE
    path = folder / f"v{SYNTHETIC_VERSION}-seed{seed}-{width}x{height}.npy" if folder else None
    if path is not None and path.is_file():
        try:
            image = np.load(path)
            if image.shape == (height, width, 3) and image.dtype == np.uint8:
                return image
        except (OSError, ValueError):
            pass  # a damaged cache file is regenerated below
    image = synthetic_panorama(seed, width, height)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, image)
            os.replace(tmp, path)  # atomic: parallel processes never read half a file
        except OSError:
            pass  # read-only home: just regenerate next time
    return image


@functools.lru_cache(maxsize=16)
def load_scene(spec: str, plane_hfov_deg: float = 90.0) -> Scene:
    """A scene from 'synthetic:<seed>', a file path, or a bare file name in the scenes folder.

    Photos whose aspect is not 2:1 are placed as a distant plane facing north.
    """
    if spec.startswith("synthetic:"):
        try:
            seed = int(spec.split(":", 1)[1] or 0)
        except ValueError:
            raise ValueError(f"scene {spec!r}: expected synthetic:<integer seed>") from None
        return Scene(cached_synthetic_panorama(seed), "equirect", label=spec)
    path = Path(spec)
    if not path.is_absolute() and not path.exists():
        path = default_scenes_dir() / spec
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"scene {spec!r}: cannot read image {path}")
    h, w = image.shape[:2]
    kind = "equirect" if abs(w / h - 2.0) < 0.01 else "plane"
    return Scene(image, kind, plane_hfov_deg=plane_hfov_deg, label=path.name)
