"""Stage 2: descriptor matching (Lowe ratio test + mutual nearest neighbour check).

FLANN KD-trees on float descriptors (RootSIFT), brute force Hamming for binary ones (ORB/AKAZE).
Matching is per (query, reference frame) pair: pooling overlapping reference frames first would
make the ratio test reject exactly the points seen twice.
"""

from __future__ import annotations

import cv2
import numpy as np

RATIO = 0.8


class QueryMatcher:
    """Holds the query's descriptors (and an index on them for the mutual check)."""

    def __init__(self, query_desc: np.ndarray, *, ratio: float = RATIO, checks: int = 64):
        self.query = query_desc
        self.ratio = ratio
        self.binary = query_desc.dtype == np.uint8
        if self.binary:
            self._make = lambda: cv2.BFMatcher(cv2.NORM_HAMMING)
        else:
            params = {"algorithm": 1, "trees": 4}  # FLANN_INDEX_KDTREE
            self._make = lambda: cv2.FlannBasedMatcher(params, {"checks": checks})

    def match(self, ref_desc: np.ndarray) -> np.ndarray:
        """(M, 2) index pairs (query index, reference index) passing ratio and mutual checks."""
        if len(self.query) < 2 or len(ref_desc) < 2:
            return np.zeros((0, 2), np.int64)
        q = self.query if self.binary else np.ascontiguousarray(self.query, np.float32)
        r = ref_desc if self.binary else np.ascontiguousarray(ref_desc, np.float32)
        fwd = self._make().knnMatch(q, r, k=2)
        pairs = []
        for m in fwd:
            if len(m) == 2 and m[0].distance < self.ratio * m[1].distance:
                pairs.append((m[0].queryIdx, m[0].trainIdx))
        if not pairs:
            return np.zeros((0, 2), np.int64)
        pairs_arr = np.array(pairs, np.int64)
        # mutual check: each matched reference descriptor's nearest query descriptor is the same
        back = self._make().knnMatch(r[pairs_arr[:, 1]], q, k=1)
        nearest = np.array([b[0].trainIdx if b else -1 for b in back])
        return pairs_arr[nearest == pairs_arr[:, 0]]
