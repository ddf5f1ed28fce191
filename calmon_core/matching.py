"""Stage 2: descriptor matching (Lowe ratio test + mutual nearest neighbour check).

FLANN KD-trees on float descriptors (RootSIFT), brute force Hamming for binary ones (ORB/AKAZE).
Matching is per (query, reference frame) pair: pooling overlapping reference frames first would
make the ratio test reject exactly the points seen twice. Each side's index is built once and
reused (reference frames across queries, the query across its reference frames).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

RATIO = 0.8
# leaves visited per query descriptor: the ratio test and RANSAC discard the few neighbours 16 misses
# and 32 would find (benchmarks/accuracy.py: same errors), at half the search time
FLANN_CHECKS = 16
FLANN_KDTREE, FLANN_TREES = 1, 4  # cv::flann algorithm id, randomised trees
FLANN_SEED = 20261202


class DescriptorIndex:
    """A nearest-neighbour index over one image's descriptors: randomised KD-trees (FLANN) over float
    descriptors, brute force Hamming over binary ones. A float index can be saved and loaded back
    (`save`, `tree_file`): building the trees is a sixth of a 1080p estimate when every check builds
    its reference frames' indices again."""

    def __init__(self, descriptors: np.ndarray, checks: int = FLANN_CHECKS, tree_file: str | Path | None = None):
        self.binary = descriptors.dtype == np.uint8
        self.descriptors = descriptors if self.binary else np.ascontiguousarray(descriptors, np.float32)
        self.checks = checks
        self.flann = None
        self.matcher = None
        if len(self.descriptors) < 2:
            return
        if self.binary:
            self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
            self.matcher.add([self.descriptors])
            self.matcher.train()
        elif tree_file is not None:
            self.flann = cv2.flann_Index()
            if not self.flann.load(self.descriptors, str(tree_file)):
                raise ValueError(f"{tree_file}: not a FLANN index of these descriptors")
        else:
            # the trees are randomised from OpenCV's thread-local RNG: seeded, the same descriptors
            # always get the same trees, whatever ran before in the process (a noisy dusk frame's
            # sigma moved between 0.004 and 0.013 deg with that state alone)
            cv2.setRNGSeed(FLANN_SEED)
            self.flann = cv2.flann_Index(self.descriptors, {"algorithm": FLANN_KDTREE, "trees": FLANN_TREES})

    def __len__(self) -> int:
        return len(self.descriptors)

    def save(self, path: str | Path) -> None:
        """Write the KD-trees (float descriptors only; the descriptors themselves are not included)."""
        if self.flann is None:
            raise ValueError("only a FLANN index over two or more float descriptors can be saved")
        self.flann.save(str(path))

    def knn(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, distances), each (len(queries), k); index -1 where there is no k-th neighbour.
        Distances are Euclidean for float descriptors (FLANN returns them squared), Hamming for binary."""
        n = len(queries)
        idx, dist = np.full((n, k), -1, np.int64), np.full((n, k), np.inf)
        if n == 0 or len(self.descriptors) == 0:
            return idx, dist
        if self.flann is not None:
            kk = min(k, len(self.descriptors))
            i, d = self.flann.knnSearch(np.ascontiguousarray(queries, np.float32), kk, params={"checks": self.checks})
            idx[:, :kk], dist[:, :kk] = i, np.sqrt(np.maximum(d, 0.0))
            return idx, dist
        if self.matcher is None:  # fewer than two descriptors: nothing is indexed
            return idx, dist
        for row, found in enumerate(self.matcher.knnMatch(queries, k=k)):
            for col, m in enumerate(found):
                idx[row, col], dist[row, col] = m.trainIdx, m.distance
        return idx, dist


class QueryMatcher:
    """Matches one query image's descriptors against reference indices."""

    def __init__(self, query_desc: np.ndarray, *, ratio: float = RATIO):
        self.index = DescriptorIndex(query_desc)
        self.ratio = ratio

    def match(self, reference: DescriptorIndex | np.ndarray, subset: np.ndarray | None = None) -> np.ndarray:
        """(M, 2) index pairs (query index, reference index) passing ratio and mutual checks.
        subset: the query keypoints that can be in the reference image at all (indices); the others
        are not looked up, which leaves the pairs of those that are as they were (the ratio test
        is among reference neighbours, the mutual check against every query keypoint)."""
        if not isinstance(reference, DescriptorIndex):
            reference = DescriptorIndex(reference)
        if len(self.index) < 2 or len(reference) < 2 or (subset is not None and len(subset) == 0):
            return np.zeros((0, 2), np.int64)
        rows = np.arange(len(self.index)) if subset is None else np.asarray(subset, np.int64)
        fwd, dist = reference.knn(self.index.descriptors[rows], 2)
        passed = (fwd[:, 1] >= 0) & (dist[:, 0] < self.ratio * dist[:, 1])
        if not passed.any():
            return np.zeros((0, 2), np.int64)
        pairs = np.stack([rows[passed], fwd[passed, 0]], axis=1)
        # mutual check: each matched reference descriptor's nearest query descriptor is the same
        back, _ = self.index.knn(reference.descriptors[pairs[:, 1]], 1)
        return pairs[back[:, 0] == pairs[:, 0]]


# Lucas-Kanade on the warped reference: displacements are a few pixels at most (the warp is the
# feature estimate), so two pyramid levels reach them; iterations stop at a thousandth of a pixel
LK_WINDOW_PX = 21
LK_MAX_LEVEL = 2
LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 0.001)


def flow_correspondences(
    query_gray: np.ndarray,
    warped_ref: np.ndarray,
    valid: np.ndarray,
    *,
    max_points: int = 1000,
    fb_max_px: float = 0.1,
    query_level: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel correspondences between a query image and a reference image already warped into
    the query's geometry (so displacements are small): corners of the query tracked with pyramidal
    Lucas-Kanade, kept when tracking back lands within fb_max_px. Returns (query uv, warped uv).
    The corners are picked on the detection level (features.detection_level: any well-textured
    point tracks as well as the corner itself; `query_level` passes it when it is at hand), the
    tracking runs at full resolution."""
    from calmon_core.features import detection_level, to_full_resolution

    mask = cv2.erode(valid.astype(np.uint8), np.ones((31, 31), np.uint8))
    level, scale = query_level if query_level is not None else detection_level(query_gray)
    if level is not query_gray:
        mask = cv2.resize(mask, level.shape[::-1], interpolation=cv2.INTER_NEAREST)
    corners = cv2.goodFeaturesToTrack(level, max_points, 0.01, 7, mask=mask, blockSize=7)
    if corners is None or len(corners) < 10:
        return np.zeros((0, 2)), np.zeros((0, 2))
    p0 = to_full_resolution(corners.reshape(-1, 2).astype(np.float64), scale).astype(np.float32).reshape(-1, 1, 2)
    params = {"winSize": (LK_WINDOW_PX, LK_WINDOW_PX), "maxLevel": LK_MAX_LEVEL, "criteria": LK_CRITERIA}
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(query_gray, warped_ref, p0, None, **params)
    p2, st2, _ = cv2.calcOpticalFlowPyrLK(warped_ref, query_gray, p1, None, **params)
    fb = np.linalg.norm((p2 - p0).reshape(-1, 2), axis=1)
    ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < fb_max_px)
    return p0.reshape(-1, 2)[ok].astype(np.float64), p1.reshape(-1, 2)[ok].astype(np.float64)
