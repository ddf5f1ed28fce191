"""Rotation solving on bearings: minimal 2-point solver, Kabsch/Arun, RANSAC gate, robust refinement.

A PTZ camera turns about its optical centre and looks at distant scenery, so a query frame's true
camera-to-world rotation R_wc maps its keypoints' camera rays onto the matched world bearings:
b_world = R_wc @ ray_cam. Every function here solves for R_wc from such pairs (or its uncertainty).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from calmon_core.conventions import pixel_rays, ypr_from_rotation
from calmon_core.lens import Lens


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
    k1_delta: float = 0.0  # fitted change of the radial term k1, when refine_k1
    residuals_px: np.ndarray | None = None  # (inliers, 2) reprojection residuals at the solution


def _project(r_wc: np.ndarray, k: np.ndarray, bearings: np.ndarray) -> np.ndarray:
    cam = bearings @ r_wc  # (R_wc^T b)^T
    p = cam @ k.T
    return p[:, :2] / p[:, 2:3]


def refine_rotation(
    r_wc: np.ndarray,
    k: np.ndarray | None,
    uv: np.ndarray,
    bearings: np.ndarray,
    *,
    inlier_px: float = 3.0,
    loss_scale_px: float = 1.0,
    refine_focal: bool = False,
    initial_inliers: np.ndarray | None = None,
    lens: Lens | None = None,
    refine_k1: bool = False,
) -> Refinement:
    """Non-linear least squares on pixel reprojection error (soft-L1 loss), optional focal scale
    and radial term k1, through `lens` (calmon_core.lens; default the pinhole of k).

    Parameters: a rotation vector applied in the camera frame, R = R0 @ exp(w), a log focal
    scale and a k1 change. The covariance comes from the Gauss-Newton Hessian at the solution,
    scaled by the robust residual variance of the inliers. Inliers are re-gated after each solve
    (starting from initial_inliers), so points a wrong focal length pushed out of the RANSAC gate
    come back."""
    uv = np.asarray(uv, float)
    inl = np.ones(len(uv), bool) if initial_inliers is None else initial_inliers.copy()
    r0 = r_wc
    base = lens if lens is not None else Lens.from_matrix(k, 1, 1)
    n_par = 3 + int(refine_focal) + int(refine_k1)
    params = np.zeros(n_par)

    def model(p):
        r = r0 @ Rotation.from_rotvec(p[:3]).as_matrix()
        ln = base
        if refine_focal:
            ln = ln.scaled_focal(float(np.exp(p[3])))
        if refine_k1:
            ln = replace(ln, k1=ln.k1 + float(p[-1]))
        return r, ln

    def project(p, sel):
        r, ln = model(p)
        if ln.is_pinhole:
            return _project(r, ln.matrix(), bearings[sel])
        return ln.project(bearings[sel] @ r)

    def residuals(p, sel):
        return (project(p, sel) - uv[sel]).ravel()

    everything = np.ones(len(uv), bool)
    for _ in range(6):
        if inl.sum() < n_par + 2:
            break
        sol = least_squares(residuals, params, args=(inl,), loss="soft_l1", f_scale=loss_scale_px, x_scale="jac")
        params = sol.x
        err = np.linalg.norm(project(params, everything) - uv, axis=1)
        new = err < inlier_px
        if np.array_equal(new, inl):
            break
        inl = new
    r, _ = model(params)
    res = residuals(params, inl)
    # plain Gauss-Newton at the solution on the inliers (no robust down-weighting here: the
    # inlier gate already removed gross outliers, and this keeps the variance honest)
    eps = 1e-7
    jac = np.empty((len(res), n_par))
    for j in range(n_par):
        d = np.zeros(n_par)
        d[j] = eps
        jac[:, j] = (residuals(params + d, inl) - res) / eps
    dof = max(1, len(res) - n_par)
    mad = 1.4826 * np.median(np.abs(res - np.median(res))) if len(res) else 0.0
    sigma2 = max(float(res @ res) / dof, mad**2)
    try:
        cov_full = sigma2 * np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        cov_full = np.full((n_par, n_par), np.inf)
    rms = float(np.sqrt(np.mean(res**2))) if len(res) else float("inf")
    return Refinement(
        rotation=r,
        covariance=cov_full[:3, :3],
        focal_scale=float(np.exp(params[3])) if refine_focal else 1.0,
        inliers=inl,
        rms_px=rms,
        k1_delta=float(params[-1]) if refine_k1 else 0.0,
        residuals_px=res.reshape(-1, 2),
    )


def residual_structure_px(uv: np.ndarray, residuals: np.ndarray, width: int, height: int, cells: int = 3) -> float:
    """How much of the reprojection residual is a smooth pattern over the image rather than noise
    (pixels, rms over cells): per cell of a cells x cells grid the mean residual vector, minus what
    independent noise of the residuals' own scatter would give it. Unmodelled distortion, a wrong
    principal point or a near scene layer shows here; its size bounds what it can do to the fit."""
    if len(uv) < 4 * cells * cells:
        return 0.0
    cx = np.clip((uv[:, 0] / width * cells).astype(int), 0, cells - 1)
    cy = np.clip((uv[:, 1] / height * cells).astype(int), 0, cells - 1)
    cell = cy * cells + cx
    noise2 = float(np.mean(np.sum(residuals**2, axis=1)))
    excess = []
    for c in range(cells * cells):
        sel = cell == c
        m = int(sel.sum())
        if m < 8:
            continue
        mean = residuals[sel].mean(axis=0)
        excess.append(max(0.0, float(mean @ mean) - 3.0 * noise2 / m))  # 3x: chi^2 margin
    return float(np.sqrt(np.mean(excess))) if excess else 0.0


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
