"""Guided matching: when appearance changed (infrared night, snow), use geometry to find matches.

Across a day -> infrared change most descriptors move far, so the global ratio test (nearest vs
second-nearest over the whole reference frame) throws away the true matches along with the false
ones. Geometry narrows the choice: a reference keypoint can only appear near where the pose
predicts it. First the telemetry pose with a window as wide as the offsets calmon expects (a few
degrees), then, once a rotation is seeded by RANSAC, a window of a few pixels: the ratio test among
the handful of candidates in that window keeps the matches whose descriptors still agree best
locally. RANSAC on the rotation, the inlier, cover and uncertainty gates downstream are unchanged:
a wrong seed gives too few consistent matches and the frame stays inconclusive.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from calmon_core.conventions import pixel_rays
from calmon_core.rotation import ransac_rotation

PLENTY = 200  # a frame with this many gated matches gains nothing from guidance
SEED_MIN_INLIERS = 10
PRIOR_WINDOW_DEG = 3.5  # telemetry may be this far off (per axis) for the wide first window
PRIOR_CANDIDATES = 48
PRIOR_RATIO = 0.85
GUIDED_WINDOW_PX = 6.0
GUIDED_CANDIDATES = 8
GUIDED_RATIO = 0.92
MAX_DESCRIPTOR_DISTANCE = 1.1  # RootSIFT (unit vectors): beyond this nothing is alike
SEED_RANSAC_PX = 3.0


def guided_matches(
    refmap,
    query_uv: np.ndarray,
    query_desc: np.ndarray,
    k: np.ndarray,
    r_wc: np.ndarray,
    frames: list[int],
    window_px: float,
    *,
    candidates: int,
    ratio: float,
    width: int,
    height: int,
):
    """(query uv, world bearing, reference frame, reference uv) of reference keypoints whose
    descriptor is clearly the best among the query keypoints within window_px of where pose r_wc
    puts them; each query keypoint used once (its closest descriptor wins)."""
    from calmon_core.estimation import FrameMatches

    empty = FrameMatches(np.zeros((0, 2)), np.zeros((0, 3)), np.zeros(0, int), np.zeros((0, 2)), list(frames))
    if len(query_uv) < 2:
        return empty
    tree = cKDTree(query_uv)
    qd = np.ascontiguousarray(query_desc, np.float32)
    rows = []  # (distance, query index, frame, ref index)
    for i in frames:
        feats = refmap.features[i]
        if len(feats) == 0:
            continue
        bearings = refmap.bearings(i)
        cam = bearings @ r_wc  # world -> query camera
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            p = cam @ k.T
            uv = p[:, :2] / p[:, 2:3]
        inside = (
            (z > 1e-6)
            & (uv[:, 0] > -window_px)
            & (uv[:, 1] > -window_px)
            & (uv[:, 0] < width + window_px)
            & (uv[:, 1] < height + window_px)
        )
        idx_ref = np.flatnonzero(inside)
        if len(idx_ref) == 0:
            continue
        dist_px, idx_q = tree.query(uv[idx_ref], k=candidates, distance_upper_bound=window_px)
        dist_px, idx_q = np.atleast_2d(dist_px), np.atleast_2d(idx_q)
        valid = np.isfinite(dist_px)
        safe = np.where(valid, idx_q, 0)
        rd = refmap.index(i).descriptors[idx_ref]
        d = np.linalg.norm(qd[safe] - rd[:, None, :], axis=2)
        d[~valid] = np.inf
        order = np.argsort(d, axis=1)
        best = np.take_along_axis(d, order[:, :1], 1)[:, 0]
        second = np.take_along_axis(d, order[:, 1:2], 1)[:, 0] if d.shape[1] > 1 else np.full(len(d), np.inf)
        ok = np.isfinite(best) & (best < MAX_DESCRIPTOR_DISTANCE) & (best < ratio * second)
        q_best = np.take_along_axis(safe, order[:, :1], 1)[:, 0]
        for n in np.flatnonzero(ok):
            rows.append((best[n], int(q_best[n]), i, int(idx_ref[n])))
    if not rows:
        return empty
    rows.sort()
    seen, keep = set(), []
    for row in rows:
        if row[1] not in seen:
            seen.add(row[1])
            keep.append(row)
    q_idx = np.array([r[1] for r in keep])
    f_idx = np.array([r[2] for r in keep])
    r_idx = np.array([r[3] for r in keep])
    uv_ref = np.stack([refmap.features[f].uv[j] for f, j in zip(f_idx, r_idx, strict=True)])
    bearings = _bearings_grouped(refmap, f_idx, uv_ref)
    return FrameMatches(query_uv[q_idx], bearings, f_idx, uv_ref, list(frames))


def _bearings_grouped(refmap, f_idx: np.ndarray, uv_ref: np.ndarray) -> np.ndarray:
    out = np.zeros((len(f_idx), 3))
    for f in np.unique(f_idx):
        sel = f_idx == f
        out[sel] = refmap.bearings(int(f), uv_ref[sel])
    return out


def _seed(k: np.ndarray, matches) -> np.ndarray | None:
    if len(matches.uv_query) < SEED_MIN_INLIERS:
        return None
    rays = pixel_rays(k, matches.uv_query)
    found = ransac_rotation(rays, matches.bearings, SEED_RANSAC_PX / float(k[0, 0]))
    if found is None or int(found.inliers.sum()) < SEED_MIN_INLIERS:
        return None
    return found.rotation


def densify(
    refmap,
    query_uv: np.ndarray,
    query_desc: np.ndarray,
    k: np.ndarray,
    r_reported: np.ndarray,
    frames: list[int],
    matches,
    width: int,
    height: int,
):
    """More matches for a frame the global matcher found few for (else `matches` unchanged)."""
    if len(matches.uv_query) >= PLENTY or not frames:
        return matches
    seed = _seed(k, matches)
    if seed is None:
        window = float(k[0, 0]) * math.tan(math.radians(PRIOR_WINDOW_DEG * math.sqrt(2)))
        wide = guided_matches(
            refmap,
            query_uv,
            query_desc,
            k,
            r_reported,
            frames,
            window,
            candidates=PRIOR_CANDIDATES,
            ratio=PRIOR_RATIO,
            width=width,
            height=height,
        )
        seed = _seed(k, wide)
        if seed is None:
            return matches
    dense = matches
    for _ in range(2):  # the second pass starts from the rotation the first one's matches give
        found = guided_matches(
            refmap,
            query_uv,
            query_desc,
            k,
            seed,
            frames,
            GUIDED_WINDOW_PX,
            candidates=GUIDED_CANDIDATES,
            ratio=GUIDED_RATIO,
            width=width,
            height=height,
        )
        if len(found.uv_query) <= len(dense.uv_query):
            break
        dense = found
        seed = _seed(k, dense)
        if seed is None:
            break
    return dense
