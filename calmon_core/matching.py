"""Stage 2: descriptor matching (Lowe ratio test + mutual nearest neighbour check).

FLANN KD-trees on float descriptors (RootSIFT), brute force Hamming for binary ones (ORB/AKAZE).
Matching is per (query, reference frame) pair: pooling overlapping reference frames first would
make the ratio test reject exactly the points seen twice. Each side's index is built once and
reused (reference frames across queries, the query across its reference frames).
"""

from __future__ import annotations

import cv2
import numpy as np

RATIO = 0.8
FLANN_CHECKS = 32


class DescriptorIndex:
    """A nearest-neighbour index over one image's descriptors."""

    def __init__(self, descriptors: np.ndarray, checks: int = FLANN_CHECKS):
        self.binary = descriptors.dtype == np.uint8
        self.descriptors = descriptors if self.binary else np.ascontiguousarray(descriptors, np.float32)
        if self.binary:
            self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        else:
            self.matcher = cv2.FlannBasedMatcher(
                {"algorithm": 1, "trees": 4},  # KD-tree
                {"checks": checks},
            )
        if len(self.descriptors) >= 2:
            self.matcher.add([self.descriptors])
            self.matcher.train()

    def __len__(self) -> int:
        return len(self.descriptors)

    def knn(self, queries: np.ndarray, k: int):
        q = queries if self.binary else np.ascontiguousarray(queries, np.float32)
        return self.matcher.knnMatch(q, k=k)


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
        queries = self.index.descriptors if subset is None else self.index.descriptors[subset]
        fwd = reference.knn(queries, 2)
        pairs = [
            (m[0].queryIdx, m[0].trainIdx) for m in fwd if len(m) == 2 and m[0].distance < self.ratio * m[1].distance
        ]
        if not pairs:
            return np.zeros((0, 2), np.int64)
        pairs_arr = np.array(pairs, np.int64)
        if subset is not None:
            pairs_arr[:, 0] = np.asarray(subset, np.int64)[pairs_arr[:, 0]]
        # mutual check: each matched reference descriptor's nearest query descriptor is the same
        back = self.index.knn(reference.descriptors[pairs_arr[:, 1]], 1)
        nearest = np.array([b[0].trainIdx if b else -1 for b in back])
        return pairs_arr[nearest == pairs_arr[:, 0]]


def flow_correspondences(
    query_gray: np.ndarray, warped_ref: np.ndarray, valid: np.ndarray, *, max_points: int = 1000, fb_max_px: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel correspondences between a query image and a reference image already warped into
    the query's geometry (so displacements are small): corners of the query tracked with pyramidal
    Lucas-Kanade, kept when tracking back lands within fb_max_px. Returns (query uv, warped uv).
    The corners are picked on the detection level (features.detection_level: any well-textured
    point tracks as well as the corner itself), the tracking runs at full resolution."""
    from calmon_core.features import detection_level, to_full_resolution

    mask = cv2.erode(valid.astype(np.uint8), np.ones((31, 31), np.uint8))
    level, scale = detection_level(query_gray)
    if level is not query_gray:
        mask = cv2.resize(mask, level.shape[::-1], interpolation=cv2.INTER_NEAREST)
    corners = cv2.goodFeaturesToTrack(level, max_points, 0.01, 7, mask=mask, blockSize=7)
    if corners is None or len(corners) < 10:
        return np.zeros((0, 2)), np.zeros((0, 2))
    p0 = to_full_resolution(corners.reshape(-1, 2).astype(np.float64), scale).astype(np.float32).reshape(-1, 1, 2)
    params = {
        "winSize": (21, 21),
        "maxLevel": 2,
        "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 0.001),
    }
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(query_gray, warped_ref, p0, None, **params)
    p2, st2, _ = cv2.calcOpticalFlowPyrLK(warped_ref, query_gray, p1, None, **params)
    fb = np.linalg.norm((p2 - p0).reshape(-1, 2), axis=1)
    ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < fb_max_px)
    return p0.reshape(-1, 2)[ok].astype(np.float64), p1.reshape(-1, 2)[ok].astype(np.float64)
