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
        self.descriptors = (descriptors if self.binary
                            else np.ascontiguousarray(descriptors, np.float32))
        if self.binary:
            self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        else:
            self.matcher = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4},  # KD-tree
                                                 {"checks": checks})
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

    def match(self, reference: DescriptorIndex | np.ndarray) -> np.ndarray:
        """(M, 2) index pairs (query index, reference index) passing ratio and mutual checks."""
        if not isinstance(reference, DescriptorIndex):
            reference = DescriptorIndex(reference)
        if len(self.index) < 2 or len(reference) < 2:
            return np.zeros((0, 2), np.int64)
        fwd = reference.knn(self.index.descriptors, 2)
        pairs = [(m[0].queryIdx, m[0].trainIdx) for m in fwd
                 if len(m) == 2 and m[0].distance < self.ratio * m[1].distance]
        if not pairs:
            return np.zeros((0, 2), np.int64)
        pairs_arr = np.array(pairs, np.int64)
        # mutual check: each matched reference descriptor's nearest query descriptor is the same
        back = self.index.knn(reference.descriptors[pairs_arr[:, 1]], 1)
        nearest = np.array([b[0].trainIdx if b else -1 for b in back])
        return pairs_arr[nearest == pairs_arr[:, 0]]
