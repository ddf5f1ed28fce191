"""The reference frames' KD-trees are saved with the features, so a check loads them instead of
building them again; a missing or damaged tree file is rebuilt, never trusted."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from calmon_core.estimation import estimate_offsets
from calmon_core.features import (
    FEATURES_DIR,
    INDEX_META,
    build_reference_features,
    load_reference_map,
    matching_descriptors,
)
from calmon_core.matching import FLANN_CHECKS, FLANN_KDTREE, FLANN_TREES, DescriptorIndex, QueryMatcher
from calmon_sim.cases import QueryView, write_query, write_reference
from calmon_sim.scene import load_scene

W, H = 640, 360
OFFSET = (0.4, -0.2, 0.1)


@pytest.fixture(scope="module")
def city(scenes_dir):
    return load_scene(str(scenes_dir / "equirec2perspec_image.jpg"))


@pytest.fixture()
def reference(tmp_path, city):
    folder = tmp_path / "reference"
    write_reference(folder, city, [-20.0, 20.0], [0.0], width=W, height=H, rng=np.random.default_rng(5))
    build_reference_features(folder)
    return folder


def _query(tmp_path, city):
    view = QueryView((0.0, 2.0, 0.0), OFFSET, 50.0)
    return write_query(tmp_path / "query", city, [view], width=W, height=H, rng=np.random.default_rng(6))


def _recovers_offset(estimate) -> bool:
    return estimate.success and all(
        abs(estimate.offsets_deg[a] - o) < 0.02 for a, o in zip(("yaw", "pitch", "roll"), OFFSET, strict=True)
    )


def test_saved_trees_are_the_ones_a_check_uses(reference):
    meta = json.loads((reference / FEATURES_DIR / INDEX_META).read_text())
    entries = meta["match_index"]
    assert len(entries) == 2 and all((reference / FEATURES_DIR / e["file"]).is_file() for e in entries)
    refmap = load_reference_map(reference)
    descriptors = np.ascontiguousarray(matching_descriptors(refmap.features[0], refmap.detector), np.float32)
    assert entries[0]["count"] == len(descriptors) > 500
    queries = matching_descriptors(refmap.features[1], refmap.detector)
    # trees built under another seed, saved in frame 0's place: the map answers with them
    cv2.setRNGSeed(12345)
    other = cv2.flann_Index(descriptors, {"algorithm": FLANN_KDTREE, "trees": FLANN_TREES})
    path = reference / FEATURES_DIR / entries[0]["file"]
    other.save(str(path))
    entries[0]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (reference / FEATURES_DIR / INDEX_META).write_text(json.dumps(meta))
    expected = other.knnSearch(queries, 2, params={"checks": FLANN_CHECKS})[0]
    loaded = load_reference_map(reference).index(0).knn(queries, 2)[0]
    assert np.array_equal(loaded, expected)
    # and differently from the trees a build makes, which are the same at every build
    built = [DescriptorIndex(descriptors).knn(queries, 2)[0] for _ in range(2)]
    assert np.array_equal(built[0], built[1])
    assert not np.array_equal(loaded, built[0])


def test_matching_through_loaded_trees_finds_the_pairs_fresh_trees_find(reference):
    refmap = load_reference_map(reference)
    query = QueryMatcher(matching_descriptors(refmap.features[1], refmap.detector))
    loaded = {tuple(p) for p in query.match(refmap.index(0))}
    fresh = {tuple(p) for p in query.match(matching_descriptors(refmap.features[0], refmap.detector))}
    assert len(loaded) > 100
    assert len(loaded & fresh) >= 0.9 * max(len(loaded), len(fresh))


@pytest.mark.parametrize("damage", ["truncated", "another frame's trees", "deleted", "listed in no meta"])
def test_a_damaged_or_missing_tree_file_is_rebuilt_and_the_check_still_works(reference, city, tmp_path, damage):
    features = reference / FEATURES_DIR
    meta_path = features / INDEX_META
    meta = json.loads(meta_path.read_text())
    first, second = (features / e["file"] for e in meta["match_index"])
    if damage == "truncated":
        first.write_bytes(first.read_bytes()[:1000])
    elif damage == "another frame's trees":
        first.write_bytes(second.read_bytes())
    elif damage == "deleted":
        first.unlink()
    else:  # features written before the trees were saved
        del meta["match_index"]
        meta_path.write_text(json.dumps(meta))
    refmap = load_reference_map(reference)
    index = refmap.index(0)
    assert len(index) == len(refmap.features[0])
    assert _recovers_offset(estimate_offsets(reference, _query(tmp_path, city), check_identity=False))
