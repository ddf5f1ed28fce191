"""Rotation-only bundle adjustment of a reference scan's frames from their overlaps.

Each reference frame starts at its reported rotation. Keypoints matched between overlapping frames
must map to the same world bearing; a weak prior keeps every frame near its telemetry, which fixes
the map's overall orientation (the gauge) at the average of what the device reported. Then one
frame's telemetry noise no longer becomes every query's offset.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix
from scipy.spatial.transform import Rotation

from calmon_core.conventions import pixel_rays, ypr_from_rotation
from calmon_core.matching import QueryMatcher

PRIOR_SIGMA_DEG = 0.05  # how far one frame's telemetry may be from the map's consensus
MAX_MATCHES_PER_PAIR = 400


def _half_diag_deg(k: np.ndarray, width: int, height: int) -> float:
    return math.degrees(math.atan(math.hypot(width / 2, height / 2) / k[0, 0]))


def overlapping_pairs(refmap) -> list[tuple[int, int]]:
    pairs = []
    fr = refmap.frames
    for i in range(len(fr)):
        for j in range(i + 1, len(fr)):
            a, b = fr[i].rotation[:, 2], fr[j].rotation[:, 2]
            angle = math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b)))))
            reach = _half_diag_deg(fr[i].k, fr[i].width, fr[i].height) + _half_diag_deg(
                fr[j].k, fr[j].width, fr[j].height
            )
            if angle < 0.8 * reach:
                pairs.append((i, j))
    return pairs


def _pair_matches(refmap, i: int, j: int) -> tuple[np.ndarray, np.ndarray] | None:
    m = QueryMatcher(refmap.descriptors_for_matching(i)).match(refmap.index(j))
    if len(m) < 12:
        return None
    ui, uj = refmap.features[i].uv[m[:, 0]], refmap.features[j].uv[m[:, 1]]
    _, mask = cv2.findHomography(ui, uj, cv2.USAC_MAGSAC, 2.0, confidence=0.999, maxIters=5000)
    if mask is None or mask.sum() < 12:
        return None
    keep = mask.ravel().astype(bool)
    ui, uj = ui[keep], uj[keep]
    # the homography gate is loose for a rotation; the reported rotations must agree too (10 px)
    bi = pixel_rays(refmap.frames[i].k, ui) @ refmap.frames[i].rotation.T
    cam = bi @ refmap.frames[j].rotation
    with np.errstate(divide="ignore", invalid="ignore"):
        p = cam @ refmap.frames[j].k.T
        pred = p[:, :2] / p[:, 2:3]
    err = np.linalg.norm(pred - uj, axis=1)
    # a constant telemetry error shifts all points alike: gate on the spread, not the size
    med = np.nanmedian(pred - uj, axis=0)
    good = np.linalg.norm(pred - uj - med, axis=1) < 10.0
    good &= np.isfinite(err)
    if good.sum() < 12:
        return None
    if good.sum() > MAX_MATCHES_PER_PAIR:
        idx = np.random.default_rng(i * 1000 + j).choice(np.flatnonzero(good), MAX_MATCHES_PER_PAIR, replace=False)
        good = np.zeros_like(good)
        good[idx] = True
    return ui[good], uj[good]


def refine_reference_rotations(refmap, prior_sigma_deg: float = PRIOR_SIGMA_DEG) -> dict:
    """Refine refmap.frames[*].rotation in place; returns the largest change per angle (deg)."""
    n = len(refmap.frames)
    zero = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "pairs": 0}
    if n < 2:
        return zero
    links = []
    for i, j in overlapping_pairs(refmap):
        found = _pair_matches(refmap, i, j)
        if found is not None:
            links.append((i, j, found[0], found[1]))
    if not links:
        return zero
    r0 = [f.rotation.copy() for f in refmap.frames]
    rays = [(pixel_rays(refmap.frames[i].k, ui), pixel_rays(refmap.frames[j].k, uj)) for i, j, ui, uj in links]
    prior_w = 1.0 / math.radians(prior_sigma_deg)  # 1 px of cost per prior sigma

    def rotations(x):
        return [r0[f] @ Rotation.from_rotvec(x[3 * f : 3 * f + 3]).as_matrix() for f in range(n)]

    def project(r, k, bearings):
        p = (bearings @ r) @ k.T
        return p[:, :2] / p[:, 2:3]

    prior_on = np.ones(3 * n)

    def residuals(x):
        rs = rotations(x)
        out = []
        for (i, j, ui, uj), (ri, rj) in zip(links, rays, strict=True):
            out.append((project(rs[j], refmap.frames[j].k, ri @ rs[i].T) - uj).ravel())
            out.append((project(rs[i], refmap.frames[i].k, rj @ rs[j].T) - ui).ravel())
        out.append(prior_w * prior_on * x)
        return np.concatenate(out)

    rows = sum(4 * len(ui) for _, _, ui, _ in links) + 3 * n
    sparsity = lil_matrix((rows, 3 * n), dtype=int)
    r = 0
    for i, j, ui, _ in links:
        m = 4 * len(ui)
        for f in (i, j):
            sparsity[r : r + m, 3 * f : 3 * f + 3] = 1
        r += m
    for c in range(3 * n):
        sparsity[r + c, c] = 1
    sol = least_squares(
        residuals, np.zeros(3 * n), jac_sparsity=sparsity, loss="soft_l1", f_scale=1.0, x_scale=1.0, max_nfev=50
    )
    # frames whose telemetry disagrees with the overlaps by more than 3 sigma lose their say in
    # the gauge (the map's overall orientation then comes from the frames that agree)
    bad = np.repeat(np.linalg.norm(sol.x.reshape(n, 3), axis=1) > 3 * math.radians(prior_sigma_deg), 3)
    if bad.any() and not bad.all():
        prior_on[bad] = 0.0
        sol = least_squares(
            residuals, sol.x, jac_sparsity=sparsity, loss="soft_l1", f_scale=1.0, x_scale=1.0, max_nfev=50
        )
    rs = rotations(sol.x)
    change = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0}
    for f in range(n):
        before, after = ypr_from_rotation(r0[f]), ypr_from_rotation(rs[f])
        for name, b, a in zip(("yaw", "pitch", "roll"), before, after, strict=True):
            d = abs((a - b + 180.0) % 360.0 - 180.0)
            change[name] = max(change[name], round(d, 5))
        refmap.frames[f].rotation = rs[f]
    return {**change, "pairs": len(links), "frames_disagreeing_with_telemetry": int(bad.sum() // 3)}
