"""Orientation conventions of shared/docs/conventions.md, the one place they are implemented.

World is ENU (X east, Y north, Z up); camera is OpenCV (x right, y down, z forward).
R_wc(yaw, pitch, roll) = Rz(-yaw) @ Rx(pitch) @ Ry(roll) @ R0, d_world = R_wc @ d_cam.
"""

from __future__ import annotations

import math

import numpy as np

R0 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_from_ypr(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation R_wc for angles in degrees."""
    return _rz(-math.radians(yaw)) @ _rx(math.radians(pitch)) @ _ry(math.radians(roll)) @ R0


def ypr_from_rotation(r_wc: np.ndarray) -> tuple[float, float, float]:
    """Inverse of rotation_from_ypr: (yaw, pitch, roll) in degrees, yaw and roll in (-180, 180].

    M = R_wc @ R0^T = Rz(-yaw) Rx(pitch) Ry(roll); its middle column is the forward direction
    (sin yaw cos pitch, cos yaw cos pitch, sin pitch) and its last row is
    (-cos pitch sin roll, sin pitch, cos pitch cos roll).
    """
    m = np.asarray(r_wc, dtype=float) @ R0.T
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, m[2, 1]))))
    yaw = math.degrees(math.atan2(m[0, 1], m[1, 1]))
    roll = math.degrees(math.atan2(-m[2, 0], m[2, 2]))
    return wrap_deg(yaw), pitch, wrap_deg(roll)


def wrap_deg(angle: float) -> float:
    """Wrap an angle in degrees into (-180, 180]."""
    wrapped = math.fmod(angle, 360.0)
    if wrapped <= -180.0:
        wrapped += 360.0
    elif wrapped > 180.0:
        wrapped -= 360.0
    return wrapped


def angle_offsets(
    true_ypr: tuple[float, float, float], reported_ypr: tuple[float, float, float]
) -> tuple[float, float, float]:
    """Offsets (true minus reported) per angle, each wrapped into (-180, 180]."""
    return tuple(wrap_deg(t - r) for t, r in zip(true_ypr, reported_ypr, strict=True))  # type: ignore[return-value]


def focal_from_hfov(width: int, hfov_deg: float) -> float:
    return (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)


def hfov_from_focal(width: int, focal: float) -> float:
    return math.degrees(2.0 * math.atan((width / 2.0) / focal))


def camera_matrix(
    width: int,
    height: int,
    hfov_deg: float | None = None,
    fx: float | None = None,
    fy: float | None = None,
    cx: float | None = None,
    cy: float | None = None,
) -> np.ndarray:
    """K from explicit fx/fy/cx/cy or from the horizontal field of view (square pixels)."""
    if fx is None:
        if hfov_deg is None:
            raise ValueError("camera_matrix needs hfov_deg or fx")
        fx = focal_from_hfov(width, hfov_deg)
    fy = fx if fy is None else fy
    cx = (width - 1) / 2.0 if cx is None else cx
    cy = (height - 1) / 2.0 if cy is None else cy
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def pixel_rays(k: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Unit camera rays K^-1 [u, v, 1] for an (N, 2) array of pixels."""
    uv = np.asarray(uv, dtype=float).reshape(-1, 2)
    rays = np.column_stack([uv, np.ones(len(uv))]) @ np.linalg.inv(k).T
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def project_rays(k: np.ndarray, rays_cam: np.ndarray) -> np.ndarray:
    """Pixels of (N, 3) camera rays; rays behind the camera give NaN."""
    rays_cam = np.asarray(rays_cam, dtype=float).reshape(-1, 3)
    z = rays_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = rays_cam @ k.T
        uv = p[:, :2] / p[:, 2:3]
    uv[z <= 1e-12] = np.nan
    return uv


def world_bearings(k: np.ndarray, uv: np.ndarray, yaw: float, pitch: float, roll: float) -> np.ndarray:
    """World unit bearings of pixels seen by a camera at (yaw, pitch, roll)."""
    return pixel_rays(k, uv) @ rotation_from_ypr(yaw, pitch, roll).T
