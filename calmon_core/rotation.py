"""Rotation solving on bearings: minimal 2-point solver, Kabsch/Arun, RANSAC gate, robust refinement.

A PTZ camera turns about its optical centre and looks at distant scenery, so a query frame's true
camera-to-world rotation R_wc maps its keypoints' camera rays onto the matched world bearings:
b_world = R_wc @ ray_cam. Every function here solves for R_wc from such pairs (or its uncertainty).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from calmon_core.conventions import pixel_rays, ypr_from_rotation


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def kabsch(rays: np.ndarray, bearings: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The rotation R minimising sum w |bearings - R rays|^2 (Arun/Kabsch, proper rotation)."""
    w = np.ones(len(rays)) if weights is None else np.asarray(weights, dtype=float)
    h = (rays * w[:, None]).T @ bearings  # sum w a b^T
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def two_point_rotations(rays: np.ndarray, bearings: np.ndarray) -> np.ndarray:
    """Minimal solver, vectorised: (M, 2, 3) ray and bearing pairs -> (M, 3, 3) rotations.

    TRIAD: an orthonormal frame from each pair (first vector, normal, their cross) in both spaces;
    the rotation takes one frame onto the other. Exact for noise-free data."""
    a1, a2 = rays[:, 0], rays[:, 1]
    b1, b2 = bearings[:, 0], bearings[:, 1]
    # the bisector-free variant weights both points equally: use the sum and the difference
    sa, da = _unit(a1 + a2), _unit(a1 - a2)
    sb, db = _unit(b1 + b2), _unit(b1 - b2)
    ta = np.stack([sa, da, np.cross(sa, da)], axis=-1)
    tb = np.stack([sb, db, np.cross(sb, db)], axis=-1)
    return tb @ np.transpose(ta, (0, 2, 1))


@dataclass
class RansacResult:
    rotation: np.ndarray  # R mapping rays onto bearings
    inliers: np.ndarray  # boolean mask
    iterations: int


def ransac_rotation(
    rays: np.ndarray,
    bearings: np.ndarray,
    threshold_rad: float,
    *,
    confidence: float = 0.9999,
    max_iterations: int = 2000,
    rng: np.random.Generator | None = None,
) -> RansacResult | None:
    """RANSAC over the 2-point solver with an angular threshold, then Kabsch on the inliers.

    Hypotheses are scored in batches (numpy), with an MSAC truncated-quadratic cost."""
    n = len(rays)
    if n < 3:
        return None
    rng = rng or np.random.default_rng(0)
    thr2 = threshold_rad**2
    best_cost, best_r = np.inf, None
    needed, done, batch = max_iterations, 0, 64
    while done < min(needed, max_iterations):
        idx = np.stack([rng.choice(n, 2, replace=False) for _ in range(batch)])
        ok = np.einsum("ij,ij->i", rays[idx[:, 0]], rays[idx[:, 1]]) < np.cos(1e-3)
        idx = idx[ok]
        done += batch
        if not len(idx):
            continue
        rots = two_point_rotations(rays[idx], bearings[idx])
        pred = np.einsum("mij,nj->mni", rots, rays)
        err2 = np.sum((pred - bearings[None]) ** 2, axis=-1)  # chord^2 ~ angle^2
        cost = np.minimum(err2, thr2).sum(axis=1)
        m = int(np.argmin(cost))
        if cost[m] < best_cost:
            best_cost, best_r = cost[m], rots[m]
            ratio = float(np.mean(err2[m] < thr2))
            if ratio > 0:
                p_good = max(ratio**2, 1e-12)
                needed = int(np.ceil(np.log(1 - confidence) / np.log(max(1e-12, 1 - p_good))))
    if best_r is None:
        return None
    inl = np.sum((rays @ best_r.T - bearings) ** 2, axis=1) < thr2
    if inl.sum() < 3:
        return RansacResult(best_r, inl, done)
    for _ in range(3):  # local optimisation: Kabsch on the inliers, re-gate
        r = kabsch(rays[inl], bearings[inl])
        new = np.sum((rays @ r.T - bearings) ** 2, axis=1) < thr2
        if new.sum() < 3:
            break
        best_r, same = r, np.array_equal(new, inl)
        inl = new
        if same:
            break
    return RansacResult(best_r, inl, done)


@dataclass
class Refinement:
    rotation: np.ndarray  # refined R_wc
    covariance: np.ndarray  # 3x3 (radians^2) of a small rotation applied in the camera frame
    focal_scale: float
    inliers: np.ndarray  # boolean mask over the input
    rms_px: float


def _project(r_wc: np.ndarray, k: np.ndarray, bearings: np.ndarray) -> np.ndarray:
    cam = bearings @ r_wc  # (R_wc^T b)^T
    p = cam @ k.T
    return p[:, :2] / p[:, 2:3]


def refine_rotation(
    r_wc: np.ndarray,
    k: np.ndarray,
    uv: np.ndarray,
    bearings: np.ndarray,
    *,
    inlier_px: float = 3.0,
    loss_scale_px: float = 1.0,
    refine_focal: bool = False,
    initial_inliers: np.ndarray | None = None,
) -> Refinement:
    """Non-linear least squares on pixel reprojection error (soft-L1 loss), optional focal scale.

    Parameters: a rotation vector applied in the camera frame, R = R0 @ exp(w), and a log focal
    scale. The covariance comes from the Gauss-Newton Hessian at the solution, scaled by the
    robust residual variance of the inliers. Inliers are re-gated after each solve (starting from
    initial_inliers), so points a wrong focal length pushed out of the RANSAC gate come back."""
    uv = np.asarray(uv, float)
    inl = np.ones(len(uv), bool) if initial_inliers is None else initial_inliers.copy()
    r0 = r_wc
    params = np.zeros(4 if refine_focal else 3)

    def model(p):
        r = r0 @ Rotation.from_rotvec(p[:3]).as_matrix()
        kk = k.copy()
        if refine_focal:
            s = np.exp(p[3])
            kk[0, 0] *= s
            kk[1, 1] *= s
        return r, kk

    def residuals(p, sel):
        r, kk = model(p)
        return (_project(r, kk, bearings[sel]) - uv[sel]).ravel()

    for _ in range(6):
        if inl.sum() < len(params) + 2:
            break
        sol = least_squares(residuals, params, args=(inl,), loss="soft_l1", f_scale=loss_scale_px, x_scale="jac")
        params = sol.x
        r, kk = model(params)
        err = np.linalg.norm(_project(r, kk, bearings) - uv, axis=1)
        new = err < inlier_px
        if np.array_equal(new, inl):
            break
        inl = new
    r, kk = model(params)
    res = (_project(r, kk, bearings[inl]) - uv[inl]).ravel()
    # plain Gauss-Newton at the solution on the inliers (no robust down-weighting here: the
    # inlier gate already removed gross outliers, and this keeps the variance honest)
    eps = 1e-7
    jac = np.empty((len(res), len(params)))
    for j in range(len(params)):
        d = np.zeros(len(params))
        d[j] = eps
        jac[:, j] = (residuals(params + d, inl) - res) / eps
    dof = max(1, len(res) - len(params))
    mad = 1.4826 * np.median(np.abs(res - np.median(res))) if len(res) else 0.0
    sigma2 = max(float(res @ res) / dof, mad**2)
    try:
        cov_full = sigma2 * np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        cov_full = np.full((len(params), len(params)), np.inf)
    rms = float(np.sqrt(np.mean(res**2))) if len(res) else float("inf")
    return Refinement(
        rotation=r,
        covariance=cov_full[:3, :3],
        focal_scale=float(np.exp(params[3])) if refine_focal else 1.0,
        inliers=inl,
        rms_px=rms,
    )


def ypr_covariance(r_wc: np.ndarray, cov_cam: np.ndarray) -> np.ndarray:
    """Propagate a camera-frame rotation covariance (rad^2) to (yaw, pitch, roll) in deg^2."""
    base = np.array(ypr_from_rotation(r_wc))
    jac = np.empty((3, 3))
    eps = 1e-6
    for j in range(3):
        d = np.zeros(3)
        d[j] = eps
        moved = np.array(ypr_from_rotation(r_wc @ Rotation.from_rotvec(d).as_matrix()))
        diff = (moved - base + 180.0) % 360.0 - 180.0
        jac[:, j] = diff / eps
    return jac @ cov_cam @ jac.T


def rays_from_pixels(k: np.ndarray, uv: np.ndarray) -> np.ndarray:
    return pixel_rays(k, uv)
