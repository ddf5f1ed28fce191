"""Image degradations that make a rendered view look like a real camera's frame."""

from __future__ import annotations

import cv2
import numpy as np

# Named levels used by the benchmarks: 0 clean, 1 everyday, 2 hard.
LEVELS = {
    0: {},
    1: {"noise_sigma": 3.0, "gamma": 1.15, "exposure": 0.9, "jpeg_quality": 85},
    2: {"noise_sigma": 4.0, "gamma": 1.5, "exposure": 0.7, "blur_sigma": 1.0, "occluders": 3, "jpeg_quality": 60},
}


def degrade(
    image: np.ndarray,
    rng: np.random.Generator | None = None,
    *,
    noise_sigma: float = 0.0,
    gamma: float = 1.0,
    exposure: float = 1.0,
    blur_sigma: float = 0.0,
    occluders: int = 0,
    jpeg_quality: int | None = None,
) -> np.ndarray:
    """Apply lighting change, blur, moving occluders, sensor noise and JPEG loss, in that order."""
    rng = rng or np.random.default_rng()
    out = image.astype(np.float32) / 255.0
    if gamma != 1.0 or exposure != 1.0:
        out = np.clip(exposure * np.power(out, gamma), 0, 1)
    if blur_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), blur_sigma)
    out = (out * 255.0).astype(np.float32)
    h, w = out.shape[:2]
    for _ in range(occluders):  # vehicles / people passing in front of the scene
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(h // 3, h))
        bw, bh = int(rng.integers(w // 20, w // 6)), int(rng.integers(h // 15, h // 5))
        color = tuple(float(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(out, (x0, y0), (x0 + bw, y0 + bh), color, -1)
    if noise_sigma > 0:
        out = out + rng.normal(0, noise_sigma, out.shape).astype(np.float32)
    out8 = np.clip(out, 0, 255).astype(np.uint8)
    if jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", out8, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        out8 = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out8


def degrade_level(image: np.ndarray, level: int, rng: np.random.Generator | None = None) -> np.ndarray:
    return degrade(image, rng, **LEVELS[level])
