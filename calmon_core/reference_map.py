"""Rotation-only bundle adjustment of a reference scan's frames from their overlaps.

Each reference frame starts at its reported rotation. Keypoints matched between overlapping frames
must map to the same world bearing; a weak prior keeps every frame near its telemetry, which fixes
the map's overall orientation (the gauge) at the average of what the device reported. Then one
frame's telemetry noise no longer becomes every query's offset.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix
from scipy.spatial.transform import Rotation

from calmon_core.conventions import ypr_from_rotation
from calmon_core.matching import QueryMatcher

PRIOR_SIGMA_DEG = 0.05  # how far one frame's telemetry may be from the map's consensus
MAX_MATCHES_PER_PAIR = 400
# two distorted views of an overlap are not related by a homography (k1 = -0.3 bends their edges by
# tens of pixels), so the pair gates are loose; the lens fit then re-gates on its own residuals
HOMOGRAPHY_GATE_PX = 6.0
SPREAD_GATE_PX = 30.0
FIT_GATE_PX = 2.0


def _half_diag_deg(k: np.ndarray, width: int, height: int) -> float:
    return math.degrees(math.atan(math.hypot(width / 2, height / 2) / k[0, 0]))


def overlapping_pairs(refmap) -> list[tuple[int, int]]:
    pairs = []
    fr = refmap.frames
    for i in range(len(fr)):
        for j in range(i + 1, len(fr)):
            a, b = fr[i].rotation[:, 2], fr[j].rotation[:, 2]
            angle = math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b)))))
            reach = _half_diag_deg(fr[i].k, fr[i].width, fr[i].height) + _half_diag_deg(
                fr[j].k, fr[j].width, fr[j].height
            )
            if angle < 0.8 * reach:
                pairs.append((i, j))
    return pairs


def _pair_matches(refmap, i: int, j: int) -> tuple[np.ndarray, np.ndarray] | None:
    m = QueryMatcher(refmap.descriptors_for_matching(i)).match(refmap.index(j))
    if len(m) < 12:
        return None
    ui, uj = refmap.features[i].uv[m[:, 0]], refmap.features[j].uv[m[:, 1]]
    _, mask = cv2.findHomography(ui, uj, cv2.USAC_MAGSAC, HOMOGRAPHY_GATE_PX, confidence=0.999, maxIters=5000)
    if mask is None or mask.sum() < 12:
        return None
    keep = mask.ravel().astype(bool)
    ui, uj = ui[keep], uj[keep]
    # the homography gate is loose for a rotation; the reported rotations must agree too
    bi = refmap.frames[i].lens.pixel_rays(ui) @ refmap.frames[i].rotation.T
    pred = refmap.frames[j].lens.project(bi @ refmap.frames[j].rotation)
    err = np.linalg.norm(pred - uj, axis=1)
    # a constant telemetry error shifts all points alike: gate on the spread, not the size
    med = np.nanmedian(pred - uj, axis=0)
    good = np.linalg.norm(pred - uj - med, axis=1) < SPREAD_GATE_PX
    good &= np.isfinite(err)
    if good.sum() < 12:
        return None
    if good.sum() > MAX_MATCHES_PER_PAIR:
        idx = np.random.default_rng(i * 1000 + j).choice(np.flatnonzero(good), MAX_MATCHES_PER_PAIR, replace=False)
        good = np.zeros_like(good)
        good[idx] = True
    return ui[good], uj[good]


# priors of the lens fit (1 sigma): wide enough to leave real lenses to the data, narrow enough to
# keep parameters the overlaps cannot see (k2 of a narrow zoom step, say) at the manifest's values
LENS_PRIOR_SIGMA = {"log_focal": 0.05, "centre": 0.02, "k1": 0.3, "k2": 0.3, "tangential": 0.005}
LENS_PARAMS = 5  # per zoom: log focal scale, cx, cy (as fractions of the width), k1, k2
ZOOM_DECIMALS = 2


def _zoom_groups(refmap) -> list[list[int]]:
    groups: dict[float, list[int]] = {}
    for i, f in enumerate(refmap.frames):
        groups.setdefault(round(f.zoom, ZOOM_DECIMALS), []).append(i)
    return [groups[z] for z in sorted(groups)]


def refine_reference_rotations(refmap, prior_sigma_deg: float = PRIOR_SIGMA_DEG, fit_lens: bool = True) -> dict:
    """Refine refmap.frames[*].rotation in place and, with fit_lens, the lens of every zoom the
    scan visited (refmap.frames[*].lens/k and refmap.lens_calibration): a rotation-only bundle
    adjustment in the manner of Sinha & Pollefeys, where overlaps of frames at one zoom fix its
    focal length, distortion and (with the telemetry prior as the gauge) its principal point, and
    frames at other zooms, matched to the grid, fix theirs. Returns the largest rotation change
    per angle (deg) and the fitted lens summary."""
    from calmon_core.lens import LensCalibration

    n = len(refmap.frames)
    zero = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "pairs": 0}
    if n < 2:
        return zero
    links = []
    for i, j in overlapping_pairs(refmap):
        found = _pair_matches(refmap, i, j)
        if found is not None:
            links.append((i, j, found[0], found[1]))
    if not links:
        return zero
    frames = refmap.frames
    r0 = [f.rotation.copy() for f in frames]
    base = [f.lens for f in frames]  # the manifest's lens
    fit = _adjust(refmap, links, prior_sigma_deg, [])
    lens_fit = None
    if fit_lens:
        candidate = _adjust(refmap, links, prior_sigma_deg, _zoom_groups(refmap))
        if _lens_pays(refmap, links, fit, candidate):
            fit = lens_fit = candidate
    rs, ls, sol, links, bad, groups = fit
    change = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0}
    for f in range(n):
        before, after = ypr_from_rotation(r0[f]), ypr_from_rotation(rs[f])
        for name, b, a in zip(("yaw", "pitch", "roll"), before, after, strict=True):
            d = abs((a - b + 180.0) % 360.0 - 180.0)
            change[name] = max(change[name], round(d, 5))
        frames[f].rotation = rs[f]
        frames[f].lens = ls[f]
        frames[f].k = ls[f].matrix()
    out = {
        **change,
        "pairs": len(links),
        "frames_disagreeing_with_telemetry": int(bad.sum() // 3),
        "lens_fitted": lens_fit is not None,
    }
    if lens_fit is not None:
        refmap.lens_calibration = LensCalibration(
            tuple(_zoom_lens(refmap, members, ls, base, links, sol) for members in groups)
        )
    return out


def _pair_errors(links, rs, ls) -> np.ndarray:
    """Reprojection error (px) of every matched point in both directions."""
    out = []
    for i, j, ui, uj in links:
        out.append(np.linalg.norm(ls[j].project(ls[i].pixel_rays(ui) @ rs[i].T @ rs[j]) - uj, axis=1))
        out.append(np.linalg.norm(ls[i].project(ls[j].pixel_rays(uj) @ rs[j].T @ rs[i]) - ui, axis=1))
    return np.nan_to_num(np.concatenate(out), nan=1e3) if out else np.zeros(0)


def _lens_pays(refmap, links, pinhole, lens) -> bool:
    """Model selection between the manifest's lens and the fitted one (BIC on a truncated
    quadratic cost over the same matches): a lens whose extra parameters only fit noise moves the
    grid's rotations without explaining the overlaps better, and a query at a zoom the scan never
    visited then inherits that bias."""
    e_pin = _pair_errors(links, pinhole[0], pinhole[1])
    e_lens = _pair_errors(links, lens[0], lens[1])
    inl = e_lens[e_lens < FIT_GATE_PX]
    if len(inl) < 12:
        return False
    var = max(float(np.mean(inl**2)) / 2.0, 1e-6)  # per image axis
    cost_pin = float(np.sum(np.minimum(e_pin, FIT_GATE_PX) ** 2))
    cost_lens = float(np.sum(np.minimum(e_lens, FIT_GATE_PX) ** 2))
    params = LENS_PARAMS * len(lens[5]) + 2
    return (cost_pin - cost_lens) / var > params * math.log(2 * len(e_lens))


def _adjust(refmap, links, prior_sigma_deg: float, groups: list[list[int]]):
    """One bundle adjustment over `links` with the lens parameters of `groups` (none: the
    manifest's lens). Returns rotations, lenses, the solution, the re-gated links, the frames
    whose telemetry lost its say, and the groups."""
    links = list(links)
    n = len(refmap.frames)
    frames = refmap.frames
    r0 = [f.rotation.copy() for f in frames]
    base = [f.lens for f in frames]  # the manifest's lens: the prior
    group_of = np.zeros(n, int)
    for g, members in enumerate(groups):
        group_of[members] = g
    n_lens = LENS_PARAMS * len(groups) + (2 if groups else 0)
    n_par = 3 * n + n_lens
    prior_w = 1.0 / math.radians(prior_sigma_deg)  # 1 px of cost per prior sigma
    sig = LENS_PRIOR_SIGMA
    lens_prior_w = np.array([1 / sig["log_focal"], 1 / sig["centre"], 1 / sig["centre"], 1 / sig["k1"], 1 / sig["k2"]])

    def lenses(x):
        if not groups:
            return base
        lx = x[3 * n :]
        p1, p2 = lx[-2:]
        out = []
        for f in range(n):
            q = lx[LENS_PARAMS * group_of[f] : LENS_PARAMS * group_of[f] + LENS_PARAMS]
            b = base[f]
            s_ = math.exp(q[0])
            out.append(
                replace(
                    b,
                    fx=b.fx * s_,
                    fy=b.fy * s_,
                    cx=b.cx + q[1] * b.width,
                    cy=b.cy + q[2] * b.width,
                    k1=b.k1 + q[3],
                    k2=b.k2 + q[4],
                    p1=b.p1 + p1,
                    p2=b.p2 + p2,
                )
            )
        return out

    def rotations(x):
        return [r0[f] @ Rotation.from_rotvec(x[3 * f : 3 * f + 3]).as_matrix() for f in range(n)]

    prior_on = np.ones(3 * n)

    def residuals(x):
        rs, ls = rotations(x), lenses(x)
        out = []
        for i, j, ui, uj in links:
            bi = ls[i].pixel_rays(ui) @ rs[i].T
            bj = ls[j].pixel_rays(uj) @ rs[j].T
            out.append((ls[j].project(bi @ rs[j]) - uj).ravel())
            out.append((ls[i].project(bj @ rs[i]) - ui).ravel())
        out.append(prior_w * prior_on * x[: 3 * n])
        if groups:
            lx = x[3 * n :]
            out.append((lx[:-2].reshape(-1, LENS_PARAMS) * lens_prior_w).ravel())
            out.append(lx[-2:] / sig["tangential"])
        return np.nan_to_num(np.concatenate(out), nan=1e3)

    def _sparsity():
        rows = sum(4 * len(ui) for _, _, ui, _ in links) + n_par
        sparsity = lil_matrix((rows, n_par), dtype=int)
        r = 0
        for i, j, ui, _ in links:
            m = 4 * len(ui)
            for f in (i, j):
                sparsity[r : r + m, 3 * f : 3 * f + 3] = 1
                if groups:
                    g = group_of[f]
                    sparsity[r : r + m, 3 * n + LENS_PARAMS * g : 3 * n + LENS_PARAMS * (g + 1)] = 1
            if groups:
                sparsity[r : r + m, n_par - 2 :] = 1
            r += m
        for c in range(n_par):
            sparsity[r + c, c] = 1
        return sparsity

    options = {"jac_sparsity": _sparsity(), "loss": "soft_l1", "f_scale": 1.0, "x_scale": "jac", "max_nfev": 60}
    sol = least_squares(residuals, np.zeros(n_par), **options)
    # re-gate every pair on the fitted model's residuals (both directions), solve again
    rs, ls = rotations(sol.x), lenses(sol.x)
    gated = []
    for i, j, ui, uj in links:
        ei = np.linalg.norm(ls[j].project(ls[i].pixel_rays(ui) @ rs[i].T @ rs[j]) - uj, axis=1)
        ej = np.linalg.norm(ls[i].project(ls[j].pixel_rays(uj) @ rs[j].T @ rs[i]) - ui, axis=1)
        keep = (ei < FIT_GATE_PX) & (ej < FIT_GATE_PX)
        if keep.sum() >= 12:
            gated.append((i, j, ui[keep], uj[keep]))
    if gated:
        links[:] = gated
        options["jac_sparsity"] = _sparsity()
        sol = least_squares(residuals, sol.x, **options)
    # frames whose telemetry disagrees with the overlaps by more than 3 sigma lose their say in
    # the gauge (the map's overall orientation then comes from the frames that agree)
    bad = np.repeat(np.linalg.norm(sol.x[: 3 * n].reshape(n, 3), axis=1) > 3 * math.radians(prior_sigma_deg), 3)
    if bad.any() and not bad.all():
        prior_on[bad] = 0.0
        sol = least_squares(residuals, sol.x, **options)
    rs, ls = rotations(sol.x), lenses(sol.x)
    return rs, ls, sol, links, bad, groups


def _zoom_lens(refmap, members: list[int], ls, base, links, sol):
    """One zoom's fitted lens with its reprojection rms and its principal point's uncertainty
    (from the Gauss-Newton covariance of the solve, scaled by the residual variance)."""
    from calmon_core.lens import ZoomLens

    f = members[0]
    res = []
    for i, j, ui, uj in links:
        if i in members or j in members:
            bi = ls[i].pixel_rays(ui) @ refmap.frames[i].rotation.T
            res.append(ls[j].project(bi @ refmap.frames[j].rotation) - uj)
    res_arr = np.concatenate(res) if res else np.zeros((0, 2))
    rms = float(np.sqrt(np.nanmean(res_arr**2))) if len(res_arr) else 0.0
    g = sorted({round(refmap.frames[m].zoom, ZOOM_DECIMALS) for m in range(len(refmap.frames))}).index(
        round(refmap.frames[f].zoom, ZOOM_DECIMALS)
    )
    n = len(refmap.frames)
    cols = [3 * n + LENS_PARAMS * g + 1, 3 * n + LENS_PARAMS * g + 2]
    try:
        jac = sol.jac.toarray() if hasattr(sol.jac, "toarray") else np.asarray(sol.jac)
        dof = max(1, len(sol.fun) - len(sol.x))
        s2 = float(sol.fun @ sol.fun) / dof
        cov = s2 * np.linalg.pinv(jac.T @ jac)
        principal = float(math.sqrt(max(cov[cols[0], cols[0]], cov[cols[1], cols[1]], 0.0)))
    except (ValueError, np.linalg.LinAlgError, MemoryError):
        principal = LENS_PRIOR_SIGMA["centre"]
    return ZoomLens(
        zoom=float(refmap.frames[f].zoom),
        lens=ls[f],
        focal_scale=ls[f].fx / base[f].fx,
        frames=len(members),
        rms_px=rms,
        principal_sigma=principal,
    )
