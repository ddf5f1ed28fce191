"""Real lenses: calmon's lens model against OpenCV's, the simulator rendering through a true lens
that calmon is not told, the reference scan calibrating that lens from its own overlaps, queries
through it, a site's own calibration in devices.yaml, and the COLMAP camera model."""

from __future__ import annotations

import sqlite3

import cv2
import numpy as np
import pytest

from calmon_core.config import ConfigError, load_fleet
from calmon_core.estimation import estimate_offsets
from calmon_core.features import FEATURES_DIR, build_reference_features, load_reference_map
from calmon_core.lens import (
    CalibrationAtZoom,
    Lens,
    LensCalibration,
    ZoomLens,
    calibration_at_zoom,
    calibration_markdown,
)
from calmon_sim.cases import QueryView, write_query, write_reference
from calmon_sim.fleet_spec import LENS_PRESETS
from calmon_sim.scene import load_scene

AXES = ("yaw", "pitch", "roll")
YAWS, PITCHES = [-30.0, 10.0, 50.0], [-8.0, 14.0]
W, H = 640, 360
SWEEP = [2.0]
STRONGISH = Lens(1280, 720, 1100.0, 1102.0, 645.0, 355.0, -0.3, 0.08, 0.001, -0.0005)


def test_pixel_rays_and_project_match_opencv():
    uv = np.random.default_rng(0).uniform([0, 0], [1279, 719], (500, 2))
    rays = STRONGISH.pixel_rays(uv)
    projected, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), STRONGISH.matrix(), STRONGISH.distortion())
    np.testing.assert_allclose(projected.reshape(-1, 2), uv, atol=1e-6)
    ideal = cv2.undistortPoints(
        uv.reshape(-1, 1, 2),
        STRONGISH.matrix(),
        STRONGISH.distortion(),
        None,
        None,
        None,
        (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12),
    )
    np.testing.assert_allclose(STRONGISH.normalised(uv), ideal.reshape(-1, 2), atol=1e-8)


def test_ray_grid_is_every_pixels_ray():
    x, y, _ = STRONGISH.ray_grid()
    pix = np.stack(np.meshgrid(np.arange(1280.0), np.arange(720.0)), -1).reshape(-1, 2)
    exact = STRONGISH.normalised(pix)
    assert np.abs(np.column_stack([x.ravel(), y.ravel()]) - exact).max() * STRONGISH.fx < 0.01


def test_resized_lens_sees_the_same_rays():
    small = STRONGISH.resized(640, 360)
    uv = np.array([[10.0, 20.0], [639.0, 359.0], [320.0, 100.0]])
    np.testing.assert_allclose(small.pixel_rays(uv), STRONGISH.pixel_rays((uv + 0.5) * 2 - 0.5), atol=1e-12)


def test_calibration_interpolates_and_grows_its_doubt_beyond_the_scan():
    wide = ZoomLens(1.0, Lens(1280, 720, 1120.0, 1120.0, 645.5, 355.5, -0.15, 0.04), 1.01, 8, principal_sigma=0.0002)
    tele = ZoomLens(4.0, Lens(320, 180, 1200.0, 1200.0, 158.0, 91.5, -0.01, 0.0), 0.99, 3, principal_sigma=0.0003)
    cal = LensCalibration((wide, tele))
    nominal = Lens(1280, 720, 2000.0, 2000.0, 639.5, 359.5)
    mid = cal.at(2.0, nominal)
    assert mid.source == "interpolated"
    assert mid.lens.k1 == pytest.approx((-0.15 - 0.01) / 2)
    assert mid.lens.fx == pytest.approx(2000.0 * 1.0)
    assert cal.at(1.0, nominal).source == "calibrated"
    assert cal.at(1.0, nominal).lens.cx == pytest.approx(639.5 + 6.0 / 1280 * 1280)
    far = cal.at(16.0, nominal)
    assert far.source == "extrapolated" and far.principal_sigma_px > mid.principal_sigma_px > 0
    assert LensCalibration.from_json_dict(cal.to_json_dict()) == cal


def test_site_calibration_interpolates_between_zooms():
    cals = [
        CalibrationAtZoom(zoom=1, camera_matrix=[[1000, 0, 640], [0, 1000, 360], [0, 0, 1]], dist_coeffs=[-0.2, 0.05]),
        CalibrationAtZoom(zoom=4, camera_matrix=[[4000, 0, 650], [0, 4000, 350], [0, 0, 1]], dist_coeffs=[-0.02]),
    ]
    lens = calibration_at_zoom(cals, 2.0, 1280, 720)
    assert lens.fx == pytest.approx(2000.0)
    assert lens.cx == pytest.approx(645.0) and lens.k1 == pytest.approx(-0.11)


def test_bad_site_calibration_names_the_key(tmp_path):
    body = (
        "deployments:\n  - name: site\n    devices:\n      - id: cam-1\n"
        "        camera: {kind: http, url: 'http://127.0.0.1:1'}\n"
        "        intrinsics:\n          width: 1280\n          height: 720\n          calibration:\n"
        "            - {zoom: 1, camera_matrix: [[1000, 0, 640], [0, 1000]], dist_coeffs: [-0.2]}\n"
        "            - {zoom: 2, camera_matrix: [[2000, 0, 640], [0, 2000, 360], [0, 0, 1]], dist_coeffs: [9, 0]}\n"
        "        reference_grid: {yaws: [0], pitches: [0]}\n"
    )
    path = tmp_path / "devices.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_fleet(path)
    text = str(err.value)
    assert "deployments[0].devices[0].intrinsics.calibration[0].camera_matrix" in text
    assert "deployments[0].devices[0].intrinsics.calibration[1].dist_coeffs" in text


def test_renderer_bends_a_marker_where_opencv_says(scenes_dir):
    """A bearing rendered through a distorted lens lands at cv2.projectPoints' pixel."""
    from calmon_core.conventions import rotation_from_ypr
    from calmon_sim.scene import Scene
    from tests.test_sim_render import bearing, panorama_with_marker, spot_centroid

    lens = LENS_PRESETS["strong"]
    k, dist = lens.camera(1.0, 60.0, 1280, 720, 1280)
    pano = panorama_with_marker(25.0, 12.0)
    image = Scene(pano, "equirect").render(0.0, 0.0, 0.0, 60.0, 1280, 720, k=k, distortion=dist)
    cam = bearing(25.0, 12.0) @ rotation_from_ypr(0.0, 0.0, 0.0)
    expected, _ = cv2.projectPoints(cam[None], np.zeros(3), np.zeros(3), k, np.array(dist))
    expected = expected.reshape(2)
    pinhole = k @ cam
    assert np.linalg.norm(pinhole[:2] / pinhole[2] - expected) > 10  # the lens really bends it
    np.testing.assert_allclose(spot_centroid(image, expected), expected, atol=0.1)


@pytest.fixture(scope="module")
def city(scenes_dir):
    return load_scene(str(scenes_dir / "equirec2perspec_image.jpg"))


@pytest.fixture(scope="module")
def typical_reference(tmp_path_factory, city):
    folder = tmp_path_factory.mktemp("lens") / "reference"
    write_reference(
        folder,
        city,
        YAWS,
        PITCHES,
        width=W,
        height=H,
        rng=np.random.default_rng(7),
        lens=LENS_PRESETS["typical"],
        zooms=SWEEP,
    )
    build_reference_features(folder)
    return folder


def test_reference_scan_calibrates_the_lens_it_was_not_told(typical_reference):
    refmap = load_reference_map(typical_reference)
    cal = refmap.lens_calibration
    assert cal is not None and [z.zoom for z in cal.zooms] == [1.0, *SWEEP]
    truth = LENS_PRESETS["typical"]
    wide = cal.zooms[0]
    k, dist = truth.camera(1.0, 60.0, W, H, W)
    assert wide.lens.k1 == pytest.approx(dist[0], abs=0.02)
    assert wide.lens.fx == pytest.approx(k[0, 0], rel=0.003)
    assert abs(wide.lens.cx - k[0, 2]) < 1.0 and abs(wide.lens.cy - k[1, 2]) < 1.0
    # what the reference_scan asset shows people: the fitted k1 and centre at every zoom
    table = calibration_markdown(cal).splitlines()
    assert len(table) == 2 + len(cal.zooms)
    assert f"{wide.lens.k1:+.4f}" in table[2] and f"({wide.lens.cx:.1f}, {wide.lens.cy:.1f})" in table[2]
    assert "No lens fitted" in calibration_markdown(None)
    with sqlite3.connect(typical_reference / FEATURES_DIR / "database.db") as con:
        models = {row[0] for row in con.execute("SELECT model FROM cameras")}
    assert models == {4}  # OPENCV


def test_queries_through_the_real_lens_are_accurate_and_honest(typical_reference, city, tmp_path):
    views = [
        QueryView((-10.0, 3.0, 0.0), (0.8, -0.3, 0.2), 60.0),  # the grid's zoom
        QueryView((30.0, 3.0, 0.0), (-0.5, 0.4, -0.1), 30.0),  # the sweep's zoom
        QueryView((0.0, 0.0, 0.0), (0.3, 0.2, 0.0), 42.0),  # between them
    ]
    query = write_query(
        tmp_path / "query", city, views, width=W, height=H, level=0, mode="active", lens=LENS_PRESETS["typical"]
    )
    est = estimate_offsets(typical_reference, query)
    assert est.success
    for frame, view in zip(est.frames, views, strict=True):
        assert frame.success, frame.failure_log
        err = np.array([frame.offsets_deg[a] - o for a, o in zip(AXES, view.offset, strict=True)])
        sigma = np.array([frame.uncertainty_deg[a] for a in AXES])
        # between the scan's zooms the principal point is interpolated: a few hundredths of a
        # pixel at 640 wide become ~0.02 deg, which the uncertainty must then say
        tol = 0.01 if frame.lens["source"] == "calibrated" else 0.04
        assert np.all(np.abs(err) < tol), (frame.image, err, frame.lens)
        assert np.all(np.abs(err) / sigma <= 3.0), (frame.image, err, sigma)
        assert frame.lens["source"] in ("calibrated", "interpolated")
        assert "focal_scale" in frame.lens["fitted"]


def test_fleet_file_lens_is_validated_with_its_key(tmp_path):
    from calmon_sim.fleet_spec import load_fleet_spec

    path = tmp_path / "fleet.yaml"
    path.write_text(
        "deployments:\n  - name: site\n    devices:\n      - id: cam-1\n        lens: {k1_by_zoom: {1.0: -5.0}}\n"
        "      - id: cam-2\n        lens: fisheye\n      - id: cam-3\n        lens: typical\n"
    )
    with pytest.raises(ConfigError) as err:
        load_fleet_spec(path)
    text = str(err.value)
    assert "deployments[0].devices[0].lens" in text and "|k| <= 1" in text
    assert "deployments[0].devices[1].lens" in text
    path.write_text("deployments:\n  - name: site\n    devices:\n      - id: cam-3\n        lens: typical\n")
    device = load_fleet_spec(path).deployments[0].devices[0]
    k, dist = device.true_lens().camera(1.0, 60.0, 1280, 720, 1280)
    assert dist[0] == pytest.approx(-0.15) and abs(k[0, 2] - 639.5) > 1  # what calmon must find itself
