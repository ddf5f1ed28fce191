"""Rotation solvers on synthetic bearings, and Euler conversion at its edges."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from calmon_core.conventions import (
    angle_offsets,
    camera_matrix,
    pixel_rays,
    rotation_from_ypr,
    wrap_deg,
    ypr_from_rotation,
)
from calmon_core.rotation import (
    kabsch,
    ransac_rotation,
    refine_rotation,
    two_point_rotations,
    ypr_covariance,
)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(Rotation.from_matrix(a.T @ b).magnitude()))


def _scene(rng, n=300, yaw=37.0, pitch=-12.0, roll=1.5, hfov=40.0):
    k = camera_matrix(1280, 720, hfov)
    uv = rng.uniform([0, 0], [1279, 719], (n, 2))
    r = rotation_from_ypr(yaw, pitch, roll)
    return k, uv, pixel_rays(k, uv), pixel_rays(k, uv) @ r.T, r


def test_two_point_solver_is_exact_without_noise():
    rng = np.random.default_rng(1)
    _, _, rays, bearings, r = _scene(rng, n=2)
    solved = two_point_rotations(rays[None], bearings[None])[0]
    assert _angle_deg(solved, r) < 1e-9


def test_kabsch_is_exact_without_noise():
    rng = np.random.default_rng(2)
    _, _, rays, bearings, r = _scene(rng)
    assert _angle_deg(kabsch(rays, bearings), r) < 1e-9


def test_ransac_and_refinement_with_noise_and_half_outliers():
    rng = np.random.default_rng(3)
    k, uv, rays, bearings, r = _scene(rng, n=600)
    noisy_uv = uv + rng.normal(0, 0.3, uv.shape)  # 0.3 px detector noise
    outliers = rng.random(len(uv)) < 0.5
    bearings = bearings.copy()
    bearings[outliers] = Rotation.random(int(outliers.sum()), random_state=4).apply(bearings[outliers])
    rays_noisy = pixel_rays(k, noisy_uv)
    found = ransac_rotation(rays_noisy, bearings, 2.5 / k[0, 0], rng=np.random.default_rng(0))
    assert found is not None
    # every inlier the gate keeps is a true one, and most true ones are kept
    assert not np.any(found.inliers & outliers)
    assert found.inliers.sum() > 0.9 * (~outliers).sum()
    refined = refine_rotation(found.rotation, k, noisy_uv[found.inliers], bearings[found.inliers])
    err = np.abs(angle_offsets(ypr_from_rotation(refined.rotation), ypr_from_rotation(r)))
    sigma = np.sqrt(np.diag(ypr_covariance(refined.rotation, refined.covariance)))
    assert np.all(err < 0.005)  # 0.3 px on ~300 points at 0.03 deg/px
    assert np.all(sigma > 0) and np.all(sigma < 0.005)
    assert np.all(err < 4 * sigma)  # the covariance is honest about it
    assert refined.rms_px == pytest.approx(0.3, rel=0.2)  # per coordinate


def test_refinement_recovers_a_focal_scale():
    rng = np.random.default_rng(5)
    k, uv, _, bearings, r = _scene(rng, n=400, hfov=20.0)
    k_wrong = k.copy()
    k_wrong[0, 0] *= 1.02
    k_wrong[1, 1] *= 1.02
    refined = refine_rotation(r, k_wrong, uv, bearings, refine_focal=True)
    assert refined.focal_scale == pytest.approx(1 / 1.02, rel=1e-6)
    assert _angle_deg(refined.rotation, r) < 1e-6


@pytest.mark.parametrize("pitch", [-80.0, -45.0, 0.0, 45.0, 80.0])
@pytest.mark.parametrize("yaw", [-179.999, -90.0, 0.0, 135.0, 180.0])
@pytest.mark.parametrize("roll", [-7.0, 0.0, 3.0])
def test_euler_round_trip(yaw, pitch, roll):
    y, p, r = ypr_from_rotation(rotation_from_ypr(yaw, pitch, roll))
    assert wrap_deg(y - yaw) == pytest.approx(0.0, abs=1e-9)
    assert p == pytest.approx(pitch, abs=1e-9)
    assert r == pytest.approx(roll, abs=1e-9)


def test_offsets_wrap_across_180():
    true = ypr_from_rotation(rotation_from_ypr(-179.8, 10.0, 0.0))
    offsets = angle_offsets(true, (179.9, 10.0, 0.0))
    assert offsets[0] == pytest.approx(0.3, abs=1e-9)
    assert offsets[1] == pytest.approx(0.0, abs=1e-9)
