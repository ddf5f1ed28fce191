"""Low-light frames as the mean of a burst: a still camera's snapshots differ by sensor noise only.

An infrared night frame at high gain is mostly noise at the scale SIFT and Lucas-Kanade work on, and
that noise is new in every snapshot (shot and read noise), while the scene, the illuminator's beam and
the lamps stay. The mean of N snapshots of a still view keeps those and has 1/sqrt(N) of the noise.
benchmarks/day_night.py: night queries against the day reference, p95 of the largest per-axis error
0.073 deg from single frames, 0.008 from bursts of 8; against a night bank entry 0.031 -> 0.010
(docs/reference-bank.md).
A daylight frame has little noise to lose, so it stays one snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from calmon_core.reference_bank import image_regime

LOW_LIGHT_FRAMES = 8  # snapshots averaged into one frame at night and at dusk


def burst_size(first: np.ndarray, low_light_frames: int = LOW_LIGHT_FRAMES) -> int:
    """How many snapshots make the frame whose first snapshot this is: low_light_frames for an
    infrared or dim one (reference_bank.image_regime), else 1."""
    return max(1, int(low_light_frames)) if image_regime(first) != "day" else 1


def stack_frames(snapshots: Sequence[np.ndarray]) -> np.ndarray:
    """The per-pixel mean of snapshots of one still view, as uint8 of their shape."""
    if not snapshots:
        raise ValueError("no snapshots to stack")
    shape = snapshots[0].shape
    for i, s in enumerate(snapshots):
        if s.shape != shape:
            raise ValueError(f"snapshot {i} is {s.shape}, the first is {shape}: not one view to stack")
    total = np.zeros(shape, np.float32)
    for s in snapshots:
        total += s
    return np.clip(np.rint(total / len(snapshots)), 0, 255).astype(np.uint8)
