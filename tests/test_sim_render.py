"""The renderer against the conventions: a marker at a known world bearing lands on the pixel that
calmon_core.conventions predicts, for panoramas and for photos placed as a plane."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calmon_core.conventions import camera_matrix, project_rays, rotation_from_ypr
from calmon_sim.scene import Scene, load_scene, synthetic_panorama

PANO_W, PANO_H = 4096, 2048
MARKER_SIGMA_DEG = 0.3


def bearing(lon_deg: float, lat_deg: float) -> np.ndarray:
    """World (ENU) unit vector of a compass heading and an elevation."""
    lon, lat = math.radians(lon_deg), math.radians(lat_deg)
    return np.array([math.sin(lon) * math.cos(lat), math.cos(lon) * math.cos(lat), math.sin(lat)])


def panorama_with_marker(lon_deg: float, lat_deg: float) -> np.ndarray:
    """A black float panorama with one Gaussian spot, isotropic on the sphere, at (lon, lat)."""
    image = np.zeros((PANO_H, PANO_W), np.float32)
    # pixel centres at ((lon / 360 + 0.5) * W - 0.5, (0.5 - lat / 180) * H - 0.5), conventions.md
    cx = (lon_deg / 360.0 + 0.5) * PANO_W - 0.5
    cy = (0.5 - lat_deg / 180.0) * PANO_H - 0.5
    half = 40
    xs = np.arange(int(cx) - half, int(cx) + half + 1)
    ys = np.arange(int(cy) - half, int(cy) + half + 1)
    lon = np.radians(((xs + 0.5) / PANO_W - 0.5) * 360.0)
    lat = np.radians((0.5 - (ys + 0.5) / PANO_H) * 180.0)
    lon_g, lat_g = np.meshgrid(lon, lat)
    dirs = np.stack([np.sin(lon_g) * np.cos(lat_g), np.cos(lon_g) * np.cos(lat_g), np.sin(lat_g)], -1)
    angle = np.degrees(np.arccos(np.clip(dirs @ bearing(lon_deg, lat_deg), -1, 1)))
    image[np.ix_(ys % PANO_H, xs % PANO_W)] = 255.0 * np.exp(-0.5 * (angle / MARKER_SIGMA_DEG) ** 2)
    return image


def spot_centroid(image: np.ndarray, near: np.ndarray, radius: int = 25) -> np.ndarray:
    """Intensity-weighted centroid of the spot within `radius` pixels of `near`."""
    u0, v0 = int(round(near[0])), int(round(near[1]))
    h, w = image.shape[:2]
    ys = np.arange(max(0, v0 - radius), min(h, v0 + radius + 1))
    xs = np.arange(max(0, u0 - radius), min(w, u0 + radius + 1))
    patch = image[np.ix_(ys, xs)].astype(np.float64)
    assert patch.sum() > 100, f"no marker near pixel {near}"
    return np.array([(patch.sum(0) * xs).sum(), (patch.sum(1) * ys).sum()]) / patch.sum()


# (yaw, pitch, roll, hfov, marker pixel to aim at): wide to narrow zoom, rolled, across the
# +-180 deg seam, looking up and down
CASES = [
    (0.0, 0.0, 0.0, 60.0, (200.0, -80.0)),
    (37.5, 12.0, 5.0, 30.0, (-150.0, 60.0)),
    (-120.0, -20.0, -8.0, 15.0, (90.0, 100.0)),
    (179.0, 5.0, 10.0, 45.0, (-230.0, -40.0)),
    (90.0, 25.0, -15.0, 8.0, (40.0, -120.0)),
]


@pytest.mark.parametrize(("yaw", "pitch", "roll", "hfov", "aim"), CASES)
def test_panorama_marker_lands_on_predicted_pixel(yaw, pitch, roll, hfov, aim):
    width, height = 640, 360
    k = camera_matrix(width, height, hfov)
    # the marker's bearing: the world direction of an off-centre pixel of this view, as lon/lat
    r_wc = rotation_from_ypr(yaw, pitch, roll)
    ray = r_wc @ np.linalg.inv(k) @ np.array([k[0, 2] + aim[0], k[1, 2] + aim[1], 1.0])
    ray /= np.linalg.norm(ray)
    lon, lat = math.degrees(math.atan2(ray[0], ray[1])), math.degrees(math.asin(ray[2]))
    scene = Scene(panorama_with_marker(lon, lat), "equirect")

    view = scene.render(yaw, pitch, roll, hfov, width, height)

    predicted = project_rays(k, (r_wc.T @ bearing(lon, lat))[None])[0]
    found = spot_centroid(view, predicted)
    assert np.linalg.norm(found - predicted) < 0.5, (found, predicted)


def test_marker_at_north_horizon_is_image_centre_when_level():
    scene = Scene(panorama_with_marker(0.0, 0.0), "equirect")
    view = scene.render(0.0, 0.0, 0.0, 40.0, 641, 361)
    found = spot_centroid(view, np.array([320.0, 180.0]))
    assert np.linalg.norm(found - [320.0, 180.0]) < 0.5


def test_roll_turns_the_view_clockwise():
    """Camera rolled clockwise (seen from behind): a marker east of the optical axis on the horizon
    appears above the horizontal centre line (conventions.md: the camera's right side dips)."""
    scene = Scene(panorama_with_marker(8.0, 0.0), "equirect")
    view = scene.render(0.0, 0.0, 20.0, 60.0, 640, 360)
    k = camera_matrix(640, 360, 60.0)
    predicted = project_rays(k, (rotation_from_ypr(0, 0, 20).T @ bearing(8.0, 0.0))[None])[0]
    found = spot_centroid(view, predicted)
    assert found[1] < 179.5 - 10
    assert np.linalg.norm(found - predicted) < 0.5


@pytest.mark.parametrize(("yaw", "pitch", "roll", "hfov"), [(0, 0, 0, 50), (8, 3, 7, 20), (16, -4, -5, 35)])
def test_plane_photo_marker_lands_on_predicted_pixel(yaw, pitch, roll, hfov):
    """A photo placed as a distant plane facing north: its pixel (px, py) is the bearing
    ((px - cx) / f, 1, (cy - py) / f) with f from the plane's horizontal field of view."""
    pw, ph, plane_hfov = 2000, 1200, 80.0
    px, py = 1234.25, 517.75
    yy, xx = np.mgrid[0:ph, 0:pw]
    photo = (255.0 * np.exp(-0.5 * ((xx - px) ** 2 + (yy - py) ** 2) / 2.5**2)).astype(np.float32)
    scene = Scene(photo, "plane", plane_hfov_deg=plane_hfov)
    f = (pw / 2.0) / math.tan(math.radians(plane_hfov) / 2.0)
    world = np.array([(px - (pw - 1) / 2.0) / f, 1.0, ((ph - 1) / 2.0 - py) / f])

    width, height = 640, 360
    view = scene.render(yaw, pitch, roll, hfov, width, height)

    k = camera_matrix(width, height, hfov)
    predicted = project_rays(k, (rotation_from_ypr(yaw, pitch, roll).T @ world)[None])[0]
    assert 0 <= predicted[0] < width and 0 <= predicted[1] < height
    found = spot_centroid(view, predicted)
    assert np.linalg.norm(found - predicted) < 0.5, (found, predicted)


def test_plane_photo_is_black_behind_the_camera():
    scene = Scene(np.full((300, 400, 3), 200, np.uint8), "plane", plane_hfov_deg=60.0)
    assert scene.render(0, 0, 0, 40, 160, 90).mean() > 150
    assert scene.render(180, 0, 0, 40, 160, 90).max() == 0


def test_synthetic_panorama_is_seeded_and_textured():
    a, b = synthetic_panorama(3, 1024, 512), synthetic_panorama(3, 1024, 512)
    c = synthetic_panorama(4, 1024, 512)
    assert a.shape == (512, 1024, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    import cv2

    corners = cv2.goodFeaturesToTrack(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), 500, 0.01, 5)
    assert corners is not None and len(corners) > 300


def test_default_scene_needs_no_files(monkeypatch, tmp_path):
    monkeypatch.setenv("CALMON_SCENES_DIR", str(tmp_path / "absent"))
    scene = load_scene("synthetic:0")
    assert scene.kind == "equirect" and scene.label == "synthetic:0"
    view = scene.render(10.0, 0.0, 0.0, 60.0, 320, 180)
    assert view.shape == (180, 320, 3) and view.std() > 10


def test_real_scene_from_the_scenes_folder(scenes_dir):
    scene = load_scene("equirec2perspec_image.jpg")
    assert scene.kind == "equirect"
    view = scene.render(-40.0, 0.0, 0.0, 60.0, 320, 180)
    assert view.shape == (180, 320, 3) and view.std() > 10
    photo = load_scene(str(scenes_dir / "stitching_weir_1.jpg"))
    assert photo.kind == "plane"
