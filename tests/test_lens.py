"""Real lenses: calmon's lens model against OpenCV's, the simulator rendering through a true lens
that calmon is not told, the reference scan calibrating that lens from its own overlaps, queries
through it, a site's own calibration in devices.yaml, and the COLMAP camera model."""

from __future__ import annotations

import sqlite3

import cv2
import numpy as np
import pytest

from calmon_core.config import ConfigError, load_fleet
from calmon_core.conventions import rotation_from_ypr
from calmon_core.estimation import estimate_offsets, overlapping_reference_frames
from calmon_core.features import (
    FEATURES_DIR,
    QUERY_NFEATURES,
    build_reference_features,
    detect,
    load_reference_map,
    matching_descriptors,
    to_gray,
)
from calmon_core.guided import GUIDED_CANDIDATES, GUIDED_RATIO, GUIDED_WINDOW_PX, guided_matches
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
from calmon_sim.lighting import Conditions
from calmon_sim.lit_cases import query_frame
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


def test_warp_maps_on_a_coarse_grid_are_the_exact_ones_through_a_strong_lens():
    from types import SimpleNamespace

    from calmon_core.conventions import rotation_from_ypr
    from calmon_core.estimation import WARP_MAP_STEP_PX, _coarse_warp_maps, _warp_maps

    ref = SimpleNamespace(lens=STRONGISH, width=1280, height=720, rotation=rotation_from_ypr(10.0, 2.0, 0.0))
    query = STRONGISH.resized(1280, 720)
    r_wc = rotation_from_ypr(25.0, -1.0, 0.3)  # the query's pose: half its view overlaps the frame
    ex, ey, ez = _warp_maps(ref, query, r_wc, np.arange(1280.0), np.arange(720.0))
    cx, cy, cz = _coarse_warp_maps(ref, query, r_wc, 1280, 720, WARP_MAP_STEP_PX)
    inside = (ez > 0) & (ex >= 0) & (ex <= 1279) & (ey >= 0) & (ey <= 719)
    assert 0.2 < inside.mean() < 0.9
    assert np.abs(cx - ex)[inside].max() < 0.01 and np.abs(cy - ey)[inside].max() < 0.01
    # where the lens's field ends (z = -1) the coarse mask may differ by a sample, outside the image
    assert not np.any(inside & ((cz > 0) != (ez > 0)))


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


def test_guided_matching_predicts_where_the_lens_puts_a_keypoint(typical_reference, city):
    """Guided matching (night, snow) looks for each reference keypoint a few pixels around where the
    pose puts it: through the frame's lens, else the frame's outer ring (typical k1 bends it ~20 px
    at 640 wide) finds nothing or the wrong keypoints."""
    refmap = load_reference_map(typical_reference)
    view = QueryView((-10.0, 3.0, 0.0), (0.6, -0.2, 0.1), 60.0)
    frame, image = query_frame(city, Conditions(), view, lens=LENS_PRESETS["typical"], width=W, height=H)
    lens = refmap.lens_for(frame.lens(), frame.telemetry.zoom).lens
    assert lens.k1 < -0.1  # the calibrated lens, not the datasheet's pinhole
    feats = detect(to_gray(image), refmap.detector, QUERY_NFEATURES)
    r_true = rotation_from_ypr(*view.true)
    frames = overlapping_reference_frames(refmap, r_true, lens.matrix(), W, H)
    found = guided_matches(
        refmap,
        feats.uv,
        matching_descriptors(feats, refmap.detector),
        lens,
        r_true,
        frames,
        GUIDED_WINDOW_PX,
        candidates=GUIDED_CANDIDATES,
        ratio=GUIDED_RATIO,
        width=W,
        height=H,
    )
    radius = np.hypot(*(found.uv_query - [(W - 1) / 2, (H - 1) / 2]).T) / np.hypot(W / 2, H / 2)
    outer = radius > 0.75
    err = np.linalg.norm(lens.project(found.bearings @ r_true) - found.uv_query, axis=1)
    assert outer.sum() >= 30, (outer.sum(), len(radius))
    assert np.median(err[outer]) < 1.0, np.median(err[outer])


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
