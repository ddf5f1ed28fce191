import math

import numpy as np
import pytest

from calmon_core.conventions import (
    angle_offsets,
    camera_matrix,
    pixel_rays,
    project_rays,
    rotation_from_ypr,
    world_bearings,
    wrap_deg,
    ypr_from_rotation,
)

FORWARD = np.array([0.0, 0.0, 1.0])


@pytest.mark.parametrize(
    ("ypr", "expected"),
    [
        ((0, 0, 0), (0, 1, 0)),
        ((90, 0, 0), (1, 0, 0)),
        ((0, 30, 0), (0, 0.8660254, 0.5)),
    ],
)
def test_forward_test_vectors(ypr, expected):
    np.testing.assert_allclose(rotation_from_ypr(*ypr) @ FORWARD, expected, atol=1e-7)


def test_roll_test_vector_right_side_dips():
    x_axis = rotation_from_ypr(0, 0, 10) @ np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(x_axis, (0.98480775, 0, -0.17364818), atol=1e-7)


def test_level_north_camera_axes():
    r = rotation_from_ypr(0, 0, 0)
    np.testing.assert_allclose(r @ [1, 0, 0], [1, 0, 0], atol=1e-12)  # x = east
    np.testing.assert_allclose(r @ [0, 1, 0], [0, 0, -1], atol=1e-12)  # y = down


def test_rotation_is_proper():
    r = rotation_from_ypr(123.4, -20.5, 7.25)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert math.isclose(np.linalg.det(r), 1.0, abs_tol=1e-12)


@pytest.mark.parametrize(
    "ypr",
    [
        (0, 0, 0),
        (179.9, 10, -5),
        (-179.9, -10, 5),
        (180.0, 0, 0),
        (45, 80, 3),
        (-45, -80, -3),
        (12.5, 33.3, 170.0),
        (-90, 0.001, -0.001),
    ],
)
def test_euler_round_trip(ypr):
    yaw, pitch, roll = ypr_from_rotation(rotation_from_ypr(*ypr))
    assert wrap_deg(yaw - ypr[0]) == pytest.approx(0, abs=1e-9)
    assert pitch == pytest.approx(ypr[1], abs=1e-9)
    assert wrap_deg(roll - ypr[2]) == pytest.approx(0, abs=1e-9)


def test_wrap_interval_is_half_open():
    assert wrap_deg(180.0) == 180.0
    assert wrap_deg(-180.0) == 180.0
    assert wrap_deg(540.0) == 180.0
    assert wrap_deg(-190.0) == pytest.approx(170.0)
    assert wrap_deg(359.5) == pytest.approx(-0.5)


def test_offsets_are_true_minus_reported_and_wrap():
    assert angle_offsets((-179.8, 1.0, 0.0), (179.9, 0.5, 0.1)) == pytest.approx((0.3, 0.5, -0.1))


def test_intrinsics_from_hfov():
    k = camera_matrix(1280, 720, 60.0)
    assert k[0, 0] == pytest.approx(640 / math.tan(math.radians(30)))
    assert (k[0, 2], k[1, 2]) == (639.5, 359.5)


def test_pixel_rays_project_back():
    k = camera_matrix(640, 360, 45.0)
    uv = np.array([[0.0, 0.0], [319.5, 179.5], [639.0, 359.0]])
    np.testing.assert_allclose(project_rays(k, pixel_rays(k, uv)), uv, atol=1e-9)
    np.testing.assert_allclose(pixel_rays(k, [[319.5, 179.5]])[0], [0, 0, 1], atol=1e-12)


def test_world_bearing_of_image_right_edge_is_east_of_heading():
    k = camera_matrix(1280, 720, 60.0)
    bearing = world_bearings(k, [[1279.5 + 0.5 - 1, 359.5]], 0, 0, 0)[0]
    heading = math.degrees(math.atan2(bearing[0], bearing[1]))
    assert heading == pytest.approx(30.0, abs=0.05)
