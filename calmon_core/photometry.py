"""Illumination-invariant preprocessing of grey images before feature detection.

Day colour, dusk and infrared night differ in overall level, in contrast (an IR picture is flat),
in noise (high gain) and locally (the illuminator's hotspot, lamp pools). Feature detection and
description run on a normalised image so those differences matter less: CLAHE (contrast-limited
adaptive histogram equalisation on tiles) equalises local contrast and level, so a flat, dark or
unevenly lit infrared frame gets the same kind of keypoints as the daylight reference, after a mild
denoise so high-gain noise is not equalised into corners. The same function runs on the reference
and on the query (calmon_core.features.detect). Methods were chosen by benchmarks/day_night.py.

`structure_problem` replaces the old "mean grey < 10 is too dark" rule: a dark frame is usable
when it still shows structure above its noise; a blank or black one is not.
"""

from __future__ import annotations

import cv2
import numpy as np

METHODS = ("none", "clahe", "clahe-denoise", "local-norm")
DEFAULT_METHOD = "none"  # measured: CLAHE raised both daylight and night p95 (benchmarks/day_night.py)
METHOD = DEFAULT_METHOD  # what features.detect uses (benchmarks switch it to compare)
CLAHE_CLIP = 2.0
CLAHE_TILE_PX = 160  # tiles about this size, whatever the resolution
MIN_STRUCTURE = 0.5  # grey levels of band-pass contrast a frame needs to be matched at all
# ... and relative to the pixel noise: white noise leaves ~0.1 of itself in that band, so below
# 0.3 x noise the "structure" is noise
MIN_STRUCTURE_SNR = 0.3
STRUCTURE_LEVEL_WIDTH = 640


def _tiles(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = shape[:2]
    return max(2, round(w / CLAHE_TILE_PX)), max(2, round(h / CLAHE_TILE_PX))


DARK_P99 = 60  # a frame whose 99th percentile is below this is stretched before detection


def stretch_dark(gray: np.ndarray) -> np.ndarray:
    """A dark frame's grey levels stretched linearly (1st..99.5th percentile to 0..255): SIFT's
    descriptors do not care about contrast, but its detector's threshold does, and a frame with
    mean grey 3 gives it nothing. Frames that are not dark pass unchanged."""
    lo, p99, hi = np.percentile(gray, (1, 99, 99.5))
    if p99 >= DARK_P99 or hi - lo < 2:
        return gray
    out = (gray.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(out, 0, 255).astype(np.uint8)


def prepare(gray: np.ndarray, method: str = DEFAULT_METHOD) -> np.ndarray:
    """The grey image normalised for feature detection (uint8, same size)."""
    gray = stretch_dark(gray)
    if method == "none":
        return gray
    if method == "clahe":
        return cv2.createCLAHE(CLAHE_CLIP, _tiles(gray.shape)).apply(gray)
    if method == "clahe-denoise":
        smooth = cv2.GaussianBlur(gray, (0, 0), 0.8)
        return cv2.createCLAHE(CLAHE_CLIP, _tiles(gray.shape)).apply(smooth)
    if method == "local-norm":
        f = gray.astype(np.float32)
        mean = cv2.GaussianBlur(f, (0, 0), 24)
        var = cv2.GaussianBlur((f - mean) ** 2, (0, 0), 24)
        out = 128 + 48 * (f - mean) / np.sqrt(var + 16.0)
        return np.clip(out, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown preprocessing {method!r} (expected one of {list(METHODS)})")


def structure_and_noise(gray: np.ndarray) -> tuple[float, float]:
    """(structure, noise) in grey levels: the std of the image between 3 and 16 px scales (where
    white pixel noise is attenuated ~10x), and the robust per-pixel noise from what a 1 px blur
    removes. Scales are full-resolution pixels; wide frames measure the structure on an
    area-averaged level no wider than ~STRUCTURE_LEVEL_WIDTH (the same numbers to within 1%, at a
    fifth of the time at 1920x1080) and the noise's median on every s-th pixel."""
    f = gray.astype(np.float32)
    h, w = f.shape[:2]
    s = max(1, w // STRUCTURE_LEVEL_WIDTH)
    level = f if s == 1 else cv2.resize(f, (w // s, h // s), interpolation=cv2.INTER_AREA)
    mid = cv2.GaussianBlur(level, (0, 0), 3.0 / s)
    coarse = cv2.GaussianBlur(level, (0, 0), 16.0 / s)
    structure = float(np.std(mid - coarse))
    resid = (f - cv2.GaussianBlur(f, (0, 0), 1.0))[::s, ::s]
    noise = float(1.4826 * np.median(np.abs(resid - np.median(resid)))) * 1.45  # the blur keeps ~30%
    return structure, noise


def structure_problem(gray: np.ndarray) -> str | None:
    """Why a frame has nothing to match (None when it has): blank, or dark with no structure."""
    structure, noise = structure_and_noise(gray)
    if structure >= MIN_STRUCTURE and structure >= MIN_STRUCTURE_SNR * noise:
        return None
    mean = float(gray.mean())
    what = "too dark" if mean < 10 else "blank (no contrast)"
    return f"the view is {what}: structure {structure:.1f} grey levels against noise {noise:.1f}"
