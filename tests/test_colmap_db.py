"""The reference features database opens in pycolmap with the right counts (both schema paths)."""

from __future__ import annotations

import numpy as np
import pytest

from calmon_core.colmap_db import write_database
from calmon_core.features import (
    COLMAP_DB,
    FEATURES_DIR,
    build_reference_features,
    load_reference_map,
)
from calmon_sim.cases import write_reference
from calmon_sim.scene import load_scene

pycolmap = pytest.importorskip("pycolmap")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, scenes_dir):
    folder = tmp_path_factory.mktemp("colmap") / "reference"
    scene = load_scene(str(scenes_dir / "equirec2perspec_image.jpg"))
    write_reference(folder, scene, [-25.0, 25.0], [0.0], width=640, height=360)
    summary = build_reference_features(folder)
    return folder, summary


@pytest.mark.parametrize("use_pycolmap", [True, False], ids=["pycolmap-schema", "sqlite3-schema"])
def test_database_opens_in_pycolmap_with_counts(reference, tmp_path, use_pycolmap):
    folder, summary = reference
    refmap = load_reference_map(folder)
    path = write_database(tmp_path / "db.db", refmap, use_pycolmap=use_pycolmap)
    db = pycolmap.Database.open(str(path))
    try:
        assert db.num_cameras() == 2
        assert db.num_images() == 2
        assert db.num_frames() == 2
        assert db.num_rigs() == 2
        assert db.num_keypoints() == summary["keypoints"]
        assert db.num_descriptors() == summary["keypoints"]
        for image_id, feats, frame in zip((1, 2), refmap.features, refmap.frames, strict=True):
            image = db.read_image(image_id)
            assert image.name == frame.image
            keypoints = db.read_keypoints(image_id)
            assert keypoints.shape[0] == len(feats)
            # COLMAP's pixel convention: the top-left pixel's centre is at (0.5, 0.5)
            np.testing.assert_allclose(keypoints[:, :2], feats.uv + 0.5, atol=1e-3)
            camera = db.read_camera(image.camera_id)
            assert camera.width == 640 and camera.height == 360
            np.testing.assert_allclose(camera.params[:2], frame.k[[0, 1], [0, 1]])
            assert db.num_descriptors_for_image(image_id) == len(feats)
    finally:
        db.close()


def test_build_writes_the_database_under_features(reference):
    folder, summary = reference
    db = pycolmap.Database.open(str(folder / FEATURES_DIR / COLMAP_DB))
    try:
        assert db.num_images() == summary["frames"] == 2
        assert db.num_keypoints() == summary["keypoints"] > 1000
    finally:
        db.close()
