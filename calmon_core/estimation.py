"""Stage 4: per-frame offset estimation and the combined estimate of a query capture.

Pipeline per query frame (each stage replaceable, like OpenCV's stitching module):
features.detect -> pick overlapping reference frames -> matching.QueryMatcher per frame ->
MAGSAC homography gate per pair -> pooled 2-point rotation RANSAC on bearings ->
robust pixel-reprojection refinement with the focal scale (rotation.refine_rotation) ->
photometric refinement (the best reference frames warped into the query's view under that
estimate, query corners tracked into them with Lucas-Kanade: sub-pixel correspondences, refit) ->
yaw/pitch/roll, offsets, uncertainty from the covariance. Then frames are combined (inverse-variance, outlier frames out).
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from calmon_core import features
from calmon_core.capture_format import CaptureFormatError, load_frame_image, read_capture
from calmon_core.check import DEFAULT_THRESHOLD_DEG, is_breach
from calmon_core.conventions import (
    angle_offsets,
    rotation_from_ypr,
    ypr_from_rotation,
)
from calmon_core.features import (
    ReferenceMap,
    build_reference_features,
    cached_features_dir,
    detect,
    has_reference_features,
    load_reference_map,
    matching_descriptors,
    to_gray,
)
from calmon_core.guided import densify
from calmon_core.lens import Lens, LensAtFrame
from calmon_core.matching import QueryMatcher, flow_correspondences
from calmon_core.models import Capture, CaptureKind, Frame
from calmon_core.photometry import structure_problem
from calmon_core.rotation import (
    Refinement,
    ransac_rotation,
    refine_rotation,
    residual_structure_px,
    ypr_covariance,
)

# level1280: features.DETECT_MAX_WIDTH; q2500: features.QUERY_NFEATURES
ALGORITHM_VERSION = "calmon-est/1.5-sift-rootsift-rot2pt-focal-lk-level1280-q2500"
AXES = ("yaw", "pitch", "roll")

MIN_INLIERS = 30  # below this a frame is inconclusive
MIN_INLIER_RATIO = 0.15  # of the pooled gated matches
MIN_COVER = 0.04  # inliers' convex hull / image area: below, the geometry is degenerate
MAX_SIGMA_DEG = 0.1  # a frame whose uncertainty is larger says "cannot tell" instead
MAX_OFFSET_DEG = 25.0  # larger disagreements with telemetry are wrong matches, not offsets
OVERLAP_MARGIN_DEG = 6.0  # offsets of several degrees still find their reference frames
MAX_REFERENCE_FRAMES = 6
RANSAC_PX = 2.5
HOMOGRAPHY_GATE_PX = 4.0
PHOTOMETRIC_GATE_PX = 1.0  # Lucas-Kanade correspondences are good to a few hundredths of a pixel
# honest uncertainty: the covariance of independent pixel noise is optimistic (JPEG blocks,
# interpolation and the reference map's own error are correlated), so it is inflated and floored
UNCERTAINTY_INFLATION = 2.5
UNCERTAINTY_FLOOR_DEG = 0.0005
DARK_MEAN, BLANK_STD = 10.0, 3.0
FIT_K1_COVER = 0.3  # inliers spanning this much of the frame can tell k1 from focal length


@dataclass
class FrameEstimate:
    image: str
    success: bool
    inliers: int
    offsets_deg: dict[str, float] | None
    uncertainty_deg: dict[str, float] | None
    reported: dict[str, float]
    estimated: dict[str, float] | None
    failure_log: str | None
    diagnostic_picture: str | None = None  # the frame's diagnostics.write_diagnostic picture
    focal_scale: float | None = None  # fitted / manifest focal length, when refined
    # the lens used: where it came from (calibrated at this zoom by the reference scan,
    # interpolated or extrapolated between its zooms, or the manifest's nominal one), what this
    # frame fitted itself, and the model error folded into the uncertainty
    lens: dict | None = None

    def to_json_dict(self) -> dict:
        return asdict(self)


@dataclass
class Estimate:
    success: bool
    offsets_deg: dict[str, float] | None
    uncertainty_deg: dict[str, float] | None
    breach: bool | None
    frames: list[FrameEstimate]
    failure_log: str | None
    inliers: int
    frames_used: int
    algorithm_version: str = ALGORITHM_VERSION

    def to_json_dict(self) -> dict:
        """The object of capture-format.md's `calmon estimate` contract (plus a few extra keys)."""
        return {
            "success": self.success,
            "offsets_deg": self.offsets_deg,
            "uncertainty_deg": self.uncertainty_deg,
            "breach": self.breach,
            "frames": [f.to_json_dict() for f in self.frames],
            "failure_log": self.failure_log,
            "inliers": self.inliers,
            "frames_used": self.frames_used,
            "algorithm_version": self.algorithm_version,
        }


@dataclass
class FrameMatches:
    """Pooled correspondences of one query frame against its reference frames."""

    uv_query: np.ndarray
    bearings: np.ndarray
    ref_frame: np.ndarray
    uv_ref: np.ndarray
    frames_tried: list[int] = field(default_factory=list)


def _rounded(d: dict[str, float], digits: int = 6) -> dict[str, float]:
    return {k: round(float(v), digits) for k, v in d.items()}


def _half_diag_deg(k: np.ndarray, width: int, height: int) -> float:
    return math.degrees(math.atan(math.hypot(width / 2, height / 2) / k[0, 0]))


def overlapping_reference_frames(
    refmap: ReferenceMap,
    r_wc: np.ndarray,
    k: np.ndarray,
    width: int,
    height: int,
    margin_deg: float = OVERLAP_MARGIN_DEG,
) -> list[int]:
    """Reference frames whose view can overlap the query's (by optical-axis angle), nearest first."""
    reach_q = _half_diag_deg(k, width, height)
    found = []
    for i, fr in enumerate(refmap.frames):
        cos = float(np.clip(fr.rotation[:, 2] @ r_wc[:, 2], -1, 1))
        angle = math.degrees(math.acos(cos))
        if angle < reach_q + _half_diag_deg(fr.k, fr.width, fr.height) + margin_deg:
            found.append((angle, i))
    return [i for _, i in sorted(found)][:MAX_REFERENCE_FRAMES]


def seen_by(refmap: ReferenceMap, i: int, bearings: np.ndarray, margin_deg: float = OVERLAP_MARGIN_DEG) -> np.ndarray:
    """Indices of the world bearings reference frame i's view holds, widened by margin_deg on every
    side (the field from the frame's lens: a barrel lens sees further than its pinhole)."""
    fr = refmap.frames[i]
    w, h = fr.width, fr.height
    edge = np.array(
        [[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1], [0, h / 2], [w - 1, h / 2], [w / 2, 0], [w / 2, h - 1]]
    )
    rays = fr.lens.pixel_rays(edge)
    half_x = math.atan(float(np.max(np.abs(rays[:, 0] / rays[:, 2])))) + math.radians(margin_deg)
    half_y = math.atan(float(np.max(np.abs(rays[:, 1] / rays[:, 2])))) + math.radians(margin_deg)
    cam = bearings @ fr.rotation  # world -> frame i's camera
    z = np.maximum(cam[:, 2], 1e-9)
    inside = (cam[:, 2] > 0) & (np.abs(cam[:, 0]) <= math.tan(min(half_x, 1.5)) * z)
    inside &= np.abs(cam[:, 1]) <= math.tan(min(half_y, 1.5)) * z
    return np.flatnonzero(inside)


def gather_matches(
    refmap: ReferenceMap,
    query_uv: np.ndarray,
    matcher: QueryMatcher,
    frames: list[int],
    query_bearings: np.ndarray | None = None,
) -> FrameMatches:
    """Match against each reference frame, gate each pair with a MAGSAC homography, pool.
    query_bearings: the keypoints' world bearings under the reported pose; with them, only the
    keypoints a reference frame can see (seen_by) are looked up in its index."""
    uq, bw, rf, ur = [], [], [], []
    for i in frames:
        subset = None if query_bearings is None else seen_by(refmap, i, query_bearings)
        pairs = matcher.match(refmap.index(i), subset)
        if len(pairs) < 8:
            continue
        a = query_uv[pairs[:, 0]]
        b = refmap.features[i].uv[pairs[:, 1]]
        _, mask = cv2.findHomography(b, a, cv2.USAC_MAGSAC, HOMOGRAPHY_GATE_PX, confidence=0.999, maxIters=5000)
        if mask is None:
            continue
        keep = mask.ravel().astype(bool)
        if keep.sum() < 8:
            continue
        uq.append(a[keep])
        ur.append(b[keep])
        bw.append(refmap.bearings(i, b[keep]))
        rf.append(np.full(int(keep.sum()), i))
    if not uq:
        return FrameMatches(np.zeros((0, 2)), np.zeros((0, 3)), np.zeros(0, int), np.zeros((0, 2)), list(frames))
    return FrameMatches(np.concatenate(uq), np.concatenate(bw), np.concatenate(rf), np.concatenate(ur), list(frames))


def _hull_fraction(uv: np.ndarray, width: int, height: int) -> float:
    if len(uv) < 3:
        return 0.0
    hull = cv2.convexHull(uv.astype(np.float32))
    return float(cv2.contourArea(hull)) / float(width * height)


WARP_MAP_STEP_PX = 4  # warp maps are exact on this grid and bilinear in between (_coarse_warp_maps)


def _warp_maps(
    fr, lens_q: Lens, r_wc: np.ndarray, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(map_x, map_y, valid) on the query pixel grid u (columns) x v (rows): where in reference
    frame fr the query's pixel (u, v) looks, under pose r_wc and lens lens_q."""
    if lens_q.is_pinhole and fr.lens.is_pinhole:
        m = (fr.lens.matrix() @ fr.rotation.T @ r_wc @ np.linalg.inv(lens_q.matrix())).astype(np.float32)
        uu, vv = u.astype(np.float32)[None, :], v.astype(np.float32)[:, None]
        x = m[0, 0] * uu + m[0, 1] * vv + m[0, 2]
        y = m[1, 0] * uu + m[1, 1] * vv + m[1, 2]
        z = m[2, 0] * uu + m[2, 1] * vv + m[2, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            map_x, map_y = x / z, y / z
    else:
        gu, gv = np.meshgrid(u, v)
        xy = lens_q.normalised(np.column_stack([gu.ravel(), gv.ravel()])).astype(np.float32)
        qx, qy = xy[:, 0].reshape(gu.shape), xy[:, 1].reshape(gu.shape)
        m = (fr.rotation.T @ r_wc).astype(np.float32)  # query camera -> reference camera
        x = m[0, 0] * qx + m[0, 1] * qy + m[0, 2]
        y = m[1, 0] * qx + m[1, 1] * qy + m[1, 2]
        z = m[2, 0] * qx + m[2, 1] * qy + m[2, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xn, yn = x / z, y / z
        rl = fr.lens
        r2 = xn * xn + yn * yn
        radial = 1 + r2 * (rl.k1 + rl.k2 * r2)
        xd = xn * radial + 2 * rl.p1 * xn * yn + rl.p2 * (r2 + 2 * xn * xn)
        yd = yn * radial + rl.p1 * (r2 + 2 * yn * yn) + 2 * rl.p2 * xn * yn
        map_x = (rl.fx * xd + rl.cx).astype(np.float32)
        map_y = (rl.fy * yd + rl.cy).astype(np.float32)
        # beyond the lens's calibrated field the polynomial folds back: keep to the image's radius
        r2_max = ((fr.width / 2) ** 2 + (fr.height / 2) ** 2) / rl.fx**2 * 1.5
        z = np.where(r2 < r2_max, z, -1.0)
    return map_x.astype(np.float32), map_y.astype(np.float32), z.astype(np.float32)


def _coarse_warp_maps(fr, lens_q: Lens, r_wc: np.ndarray, width: int, height: int, step: int):
    """_warp_maps exact on a grid of `step` px (one sample beyond each edge) and bilinear in between
    (cv2.resize on float maps: float weights): the maps are smooth (at step 4 within 0.004 px of the
    exact ones at 1280x720, even through a k1 = -0.3 lens), and computing them per pixel cost more
    than the warp itself (8x more through a lens)."""
    nx, ny = -(-width // step), -(-height // step)
    # coarse sample j sits where cv2.resize puts it: output pixel (j + 0.5) * step - 0.5, less one step
    u = (np.arange(-1, nx + 1) + 0.5) * step - 0.5
    v = (np.arange(-1, ny + 1) + 0.5) * step - 0.5
    size = ((nx + 2) * step, (ny + 2) * step)
    out = []
    map_x, map_y, z = _warp_maps(fr, lens_q, r_wc, u, v)
    for coarse in (map_x, map_y) if np.all(z > 0) else (map_x, map_y, z):
        fine = cv2.resize(coarse, size, interpolation=cv2.INTER_LINEAR)
        out.append(np.ascontiguousarray(fine[step : step + height, step : step + width]))
    if len(out) == 2:  # every sample in front of both cameras: so is every pixel between them
        out.append(np.broadcast_to(np.float32(1.0), (height, width)))
    return tuple(out)


def warp_reference(
    refmap: ReferenceMap, i: int, k_q: np.ndarray | Lens, r_wc: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Reference frame i resampled into the query's geometry (pose r_wc, lens k_q: a Lens or a
    pinhole matrix), and the mask of query pixels it covers. Pixel (u, v) of the result shows the
    world bearing r_wc @ ray_q(u, v) under the reference map."""
    ref = refmap.gray_image(i)
    if ref is None:
        return None
    fr = refmap.frames[i]
    lens_q = k_q if isinstance(k_q, Lens) else Lens.from_matrix(k_q, width, height)
    map_x, map_y, z = _coarse_warp_maps(fr, lens_q, r_wc, width, height, WARP_MAP_STEP_PX)
    valid = (z > 0) & (map_x >= 0) & (map_y >= 0) & (map_x <= fr.width - 1) & (map_y <= fr.height - 1)
    map_x[~valid], map_y[~valid] = -1, -1
    warped = cv2.remap(ref, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
    return warped, valid


HISTOGRAM_STEP_PX = 2  # grey-level distributions from every 2nd pixel of every 2nd row: the same curve, 4x fewer pixels


def _match_histogram(source: np.ndarray, target: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """source's grey levels mapped so their distribution over `valid` matches target's (lighting
    and gamma changes would otherwise pull Lucas-Kanade)."""
    step = HISTOGRAM_STEP_PX
    sample = valid[::step, ::step]
    hs = np.bincount(source[::step, ::step][sample], minlength=256).cumsum().astype(np.float64)
    ht = np.bincount(target[::step, ::step][sample], minlength=256).cumsum().astype(np.float64)
    hs /= max(hs[-1], 1.0)
    ht /= max(ht[-1], 1.0)
    lut = np.clip(np.searchsorted(ht, hs), 0, 255).astype(np.uint8)
    return lut[source]


def photometric_correspondences(
    refmap: ReferenceMap, gray: np.ndarray, k_q: np.ndarray | Lens, r_wc: np.ndarray, frames: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel (query uv, world bearing) pairs: each reference frame is warped into the query's
    view under the feature estimate, and query corners are tracked into it (matching.py)."""
    h, w = gray.shape[:2]
    lens_q = k_q if isinstance(k_q, Lens) else Lens.from_matrix(k_q, w, h)
    level = features.detection_level(gray)
    uvs, bearings = [], []
    for i in frames:
        warped = warp_reference(refmap, i, lens_q, r_wc, w, h)
        if warped is None:
            continue
        image, valid = warped
        if valid.mean() < 0.1:
            continue
        image = _match_histogram(image, gray, valid)
        uv_q, uv_w = flow_correspondences(gray, image, valid, query_level=level)
        if len(uv_q) == 0:
            continue
        uvs.append(uv_q)
        bearings.append(lens_q.pixel_rays(uv_w) @ r_wc.T)
    if not uvs:
        return np.zeros((0, 2)), np.zeros((0, 3))
    return np.concatenate(uvs), np.concatenate(bearings)


def _failed(frame: Frame, reported: dict, inliers: int, why: str) -> FrameEstimate:
    return FrameEstimate(frame.image, False, inliers, None, None, reported, None, why)


@dataclass
class FrameSolution:
    estimate: FrameEstimate
    rotation: np.ndarray | None = None
    matches: FrameMatches | None = None
    inlier_mask: np.ndarray | None = None


def estimate_frame(
    refmap: ReferenceMap, frame: Frame, image: np.ndarray, *, refine_focal: bool = True
) -> FrameSolution:
    """Estimate one query frame's true orientation against a reference map."""
    t = frame.telemetry
    reported = {"yaw": t.yaw, "pitch": t.pitch, "roll": t.roll, "zoom": t.zoom}
    h, w = image.shape[:2]
    nominal = frame.lens()
    if (w, h) != (frame.width, frame.height):
        nominal = nominal.resized(w, h)
    lens_at = refmap.lens_for(nominal, t.zoom)
    lens = lens_at.lens
    k = lens.matrix()
    gray = to_gray(image)
    problem = structure_problem(gray)  # dark frames are fine while they show structure above their noise
    if problem:
        return FrameSolution(
            _failed(frame, reported, 0, f"{frame.image}: {problem}; nothing to match against the reference scan")
        )
    r_rep = rotation_from_ypr(t.yaw, t.pitch, t.roll)
    feats = detect(gray, refmap.detector, features.QUERY_NFEATURES, max_width=features.QUERY_DETECT_MAX_WIDTH)
    if len(feats) < MIN_INLIERS:
        return FrameSolution(
            _failed(
                frame,
                reported,
                0,
                f"{frame.image}: only {len(feats)} keypoints in the view (sky, fog, blank or out of focus?)",
            )
        )
    matcher = QueryMatcher(matching_descriptors(feats, refmap.detector))
    candidates = overlapping_reference_frames(refmap, r_rep, k, w, h)
    matches = gather_matches(refmap, feats.uv, matcher, candidates, lens.pixel_rays(feats.uv) @ r_rep.T)
    if len(matches.uv_query) < MIN_INLIERS and len(candidates) < len(refmap.frames):
        # global fallback: telemetry may be far off, or the reported view outside the grid
        matches = gather_matches(refmap, feats.uv, matcher, list(range(len(refmap.frames))))
    # few matches (night, snow): geometry-guided matching around the pose finds the rest
    matches = densify(refmap, feats.uv, matcher.index.descriptors, lens, r_rep, candidates, matches, w, h)
    n = len(matches.uv_query)
    if n < MIN_INLIERS:
        return FrameSolution(
            _failed(
                frame,
                reported,
                n,
                f"{frame.image}: only {n} geometrically "
                f"consistent matches with the reference scan (need "
                f"{MIN_INLIERS}); scene changed, occluded, or low texture",
            )
        )
    rays = lens.pixel_rays(matches.uv_query)
    f = float(k[0, 0])
    ransac = ransac_rotation(rays, matches.bearings, RANSAC_PX / f)
    if ransac is None or ransac.inliers.sum() < MIN_INLIERS:
        got = 0 if ransac is None else int(ransac.inliers.sum())
        return FrameSolution(
            _failed(
                frame,
                reported,
                got,
                f"{frame.image}: no rotation explains enough matches ({got} of {n}); scene changed or repetitive",
            )
        )
    inl = ransac.inliers
    ref = refine_rotation(
        ransac.rotation,
        k,
        matches.uv_query,
        matches.bearings,
        inlier_px=RANSAC_PX,
        refine_focal=refine_focal,
        initial_inliers=inl,
        lens=lens,
    )
    mask = ref.inliers
    count = int(mask.sum())
    if count < MIN_INLIERS or count < MIN_INLIER_RATIO * n:
        return FrameSolution(
            _failed(
                frame, reported, count, f"{frame.image}: {count} of {n} matches agree on one rotation: too few to trust"
            )
        )
    cover = _hull_fraction(matches.uv_query[mask], w, h)
    if cover < MIN_COVER:
        return FrameSolution(
            _failed(
                frame,
                reported,
                count,
                f"{frame.image}: the {count} inliers cover {100 * cover:.1f}% of the image: degenerate geometry",
            )
        )
    r_est = ref.rotation
    est = ypr_from_rotation(r_est)
    offsets = angle_offsets(est, (t.yaw, t.pitch, t.roll))
    cos = float(np.clip((np.trace(r_rep.T @ r_est) - 1) / 2, -1, 1))
    if math.degrees(math.acos(cos)) > MAX_OFFSET_DEG:
        return FrameSolution(
            _failed(
                frame,
                reported,
                count,
                f"{frame.image}: the best fit is "
                f"{math.degrees(math.acos(cos)):.1f} deg from the reported "
                "pose: a different place matched, not an offset",
            )
        )
    # without any lens calibration from the scan, inliers spanning the frame can fit k1 themselves
    # (beyond the scan's zooms k1 is held: a per-frame k1 trades against rotation on one-sided
    # inliers, measured 0.01 deg worse on a pinhole)
    fit_k1 = lens_at.source == "nominal" and cover >= FIT_K1_COVER
    if fit_k1:
        with_k1 = refine_rotation(
            ref.rotation,
            k,
            matches.uv_query,
            matches.bearings,
            inlier_px=RANSAC_PX,
            refine_focal=refine_focal,
            initial_inliers=mask,
            lens=lens,
            refine_k1=True,
        )
        if with_k1.inliers.sum() >= count and with_k1.rms_px < ref.rms_px:
            lens = replace(lens, k1=lens.k1 + with_k1.k1_delta)
            ref = replace(with_k1, k1_delta=0.0)
            mask = ref.inliers
            r_est = ref.rotation
            est = ypr_from_rotation(r_est)
            offsets = angle_offsets(est, (t.yaw, t.pitch, t.roll))
        else:
            fit_k1 = False
    model_px = _model_error_px(lens_at, ref, matches.uv_query[ref.inliers], w, h)
    sig = _sigma_deg(r_est, ref.covariance, model_px, lens, w, h, lens_at.principal_sigma_px)
    if not np.all(np.isfinite(sig)) or sig.max() > MAX_SIGMA_DEG:
        return FrameSolution(
            _failed(
                frame,
                reported,
                count,
                f"{frame.image}: uncertainty "
                f"{float(np.nanmax(sig)):.3f} deg is too large to tell (weak "
                "geometry, near-vertical view or blur)",
            )
        )
    r_feat, k_fit = r_est, lens.scaled_focal(ref.focal_scale)
    top = [
        int(x)
        for x in np.argsort(-np.bincount(matches.ref_frame[mask], minlength=len(refmap.frames)))[:2]
        if np.sum(matches.ref_frame[mask] == x) >= MIN_INLIERS
    ]
    uv_f, bearing_f = photometric_correspondences(refmap, gray, k_fit, r_feat, top)
    if len(uv_f) >= 2 * MIN_INLIERS and _hull_fraction(uv_f, w, h) >= MIN_COVER:
        fine = refine_rotation(
            r_feat,
            None,
            uv_f,
            bearing_f,
            inlier_px=PHOTOMETRIC_GATE_PX,
            loss_scale_px=0.2,
            refine_focal=refine_focal,
            lens=k_fit,
        )
        model_f = _model_error_px(lens_at, fine, uv_f[fine.inliers], w, h)
        sig_f = _sigma_deg(
            fine.rotation, fine.covariance, max(model_f, model_px), k_fit, w, h, lens_at.principal_sigma_px
        )
        est_f = ypr_from_rotation(fine.rotation)
        moved = np.abs(angle_offsets(est_f, est))
        # the photometric fit refines, it may not overrule: it must land within the feature fit's
        # own uncertainty (else lighting or occluders pulled it and the features stand)
        if fine.inliers.sum() >= 2 * MIN_INLIERS and np.all(moved <= 4 * sig + 0.002) and np.all(sig_f <= sig):
            r_est, est, sig = fine.rotation, est_f, sig_f
            offsets = angle_offsets(est, (t.yaw, t.pitch, t.roll))
            ref = Refinement(
                fine.rotation, fine.covariance, ref.focal_scale * fine.focal_scale, ref.inliers, fine.rms_px
            )
            model_px = max(model_f, model_px)
    fe = FrameEstimate(
        image=frame.image,
        success=True,
        inliers=count,
        offsets_deg=_rounded(dict(zip(AXES, offsets, strict=True))),
        uncertainty_deg=_rounded(dict(zip(AXES, sig, strict=True))),
        reported=reported,
        estimated=_rounded(dict(zip(AXES, est, strict=True))),
        failure_log=None,
        focal_scale=round(ref.focal_scale, 6) if refine_focal else None,
        lens={
            "source": lens_at.source,
            "fitted": ["rotation"] + (["focal_scale"] if refine_focal else []) + (["k1"] if fit_k1 else []),
            "k1": round(lens.k1, 5),
            "focal_px": round(lens.fx * ref.focal_scale, 3),
            "principal_point_px": [round(lens.cx, 2), round(lens.cy, 2)],
            "principal_sigma_px": round(lens_at.principal_sigma_px, 3),
            "model_error_px": round(model_px, 4),
        },
    )
    return FrameSolution(fe, r_est, matches, mask)


def _model_error_px(lens_at: LensAtFrame, fit: Refinement, uv: np.ndarray, w: int, h: int) -> float:
    """Pixels of systematic error the fit cannot see in its own covariance: the residuals'
    smooth pattern over the image (unmodelled lens or scene structure)."""
    if fit.residuals_px is None or len(fit.residuals_px) != len(uv):
        return 0.0
    return residual_structure_px(uv, fit.residuals_px, w, h)


def _sigma_deg(
    r_est: np.ndarray, cov_cam: np.ndarray, model_px: float, lens: Lens, w: int, h: int, principal_px: float = 0.0
) -> np.ndarray:
    """Per-axis 1-sigma (deg): the fit's covariance (inflated, floored) plus the model terms in the
    camera frame: the principal point's doubt and residual structure shift the view like a pan or
    tilt of (pixels / focal) rad, and turn it like a roll of (pixels / half the image diagonal)."""
    f = lens.fx
    radius = 0.5 * math.hypot(w, h)
    shift2 = (model_px**2 + principal_px**2) / f**2
    model = np.diag([shift2, shift2, (model_px / radius) ** 2])
    cov = ypr_covariance(r_est, cov_cam * UNCERTAINTY_INFLATION**2 + model)
    sig = np.sqrt(np.maximum(np.diag(cov), 0.0))
    return np.sqrt(sig**2 + UNCERTAINTY_FLOOR_DEG**2)


def combine_frames(
    frames: list[FrameEstimate], gauge_sigmas: list[dict[str, float]] | None = None
) -> tuple[dict, dict, list[FrameEstimate], str | None]:
    """Inverse-variance mean per axis over the frames, after rejecting frames that disagree.
    gauge_sigmas: per frame, the uncertainty of the gauge of the reference it was measured against
    (gauge.gauge_uncertainty: a registered scan's correction error). That error is common to every
    frame measured against one scan, so averaging frames does not shrink it: it is added to the
    combined sigma (its weighted mean over the frames used) and to each frame's own."""
    good = [f for f in frames if f.success]
    if not good:
        return {}, {}, [], None
    gauge = np.zeros((len(good), 3))
    if gauge_sigmas is not None:
        by_frame = {id(f): g for f, g in zip(frames, gauge_sigmas, strict=True)}
        gauge = np.array([[by_frame[id(f)][a] for a in AXES] for f in good])
    off = np.array([[f.offsets_deg[a] for a in AXES] for f in good])
    sig = np.array([[f.uncertainty_deg[a] for a in AXES] for f in good])
    med = np.median(off, axis=0)
    tol = np.maximum(4.0 * np.sqrt(sig**2 + np.median(sig, axis=0) ** 2), 0.02)
    keep = np.all(np.abs(off - med) <= tol, axis=1)
    note = None
    if keep.sum() * 2 <= len(good) and len(good) > 1:
        note = "query frames disagree with each other; the camera may have moved during capture"
        keep = np.ones(len(good), bool)
    rejected = [good[i].image for i in np.flatnonzero(~keep)]
    if rejected:
        note = f"frames left out as outliers: {', '.join(rejected)}"
    used = [g for g, k_ in zip(good, keep, strict=True) if k_]
    o, s = off[keep], sig[keep]
    wts = 1.0 / s**2
    mean = (wts * o).sum(axis=0) / wts.sum(axis=0)
    sigma = np.sqrt(1.0 / wts.sum(axis=0))
    if len(o) > 1:  # the frames' scatter, when larger than their claims, is the honest figure
        scatter = np.sqrt(((o - mean) ** 2 * wts).sum(axis=0) / wts.sum(axis=0) / (len(o) - 1))
        sigma = np.maximum(sigma, scatter)
    if np.any(gauge > 0):
        sigma = np.sqrt(sigma**2 + ((wts * gauge[keep]).sum(axis=0) / wts.sum(axis=0)) ** 2)
        for f, g in zip(good, gauge, strict=True):
            own = np.array([f.uncertainty_deg[a] for a in AXES])
            f.uncertainty_deg = _rounded(dict(zip(AXES, np.sqrt(own**2 + g**2), strict=True)))
    return (_rounded(dict(zip(AXES, mean, strict=True))), _rounded(dict(zip(AXES, sigma, strict=True))), used, note)


class ReferenceScanError(CaptureFormatError):
    """The reference scan (manifest, images or features/) cannot be used; the fix is a new scan."""


class IdentityMismatchError(CaptureFormatError):
    """Reference and query are not a reference and a query of one device of one deployment."""


def identity_problems(reference: Capture, query: Capture) -> list[str]:
    """Why two manifests cannot be a reference scan and a query capture of the same camera."""
    problems = []
    if reference.kind != CaptureKind.reference:
        problems.append(f"the reference is a {reference.kind.value} capture, not a reference scan")
    if query.kind != CaptureKind.query:
        problems.append(f"the query is a {query.kind.value} capture, not a query")
    if reference.deployment_name != query.deployment_name:
        problems.append(f"deployments differ: {reference.deployment_name!r} and {query.deployment_name!r}")
    if reference.device_id != query.device_id:
        problems.append(f"devices differ: {reference.device_id!r} and {query.device_id!r}")
    return problems


def _features_dir(folder: Path, features_cache: Path | None) -> Path | None:
    """The reference's own features/ when valid; else (with a cache) the cache's folder for it."""
    if features_cache is None or has_reference_features(folder):
        return None
    return cached_features_dir(folder, features_cache)


def _load_reference(folder: Path, features_cache: Path | None = None) -> tuple[Capture, ReferenceMap]:
    try:
        capture = read_capture(folder)
        if not capture.frames:
            raise CaptureFormatError(f"{folder / 'manifest.json'}: reference has no frames")
        features_dir = _features_dir(folder, features_cache)
        if not has_reference_features(folder, features_dir):
            build_reference_features(folder, features_dir=features_dir)
        return capture, load_reference_map(folder, features_dir)
    # a truncated features index raises whatever numpy's zip reader meets first
    except (CaptureFormatError, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ReferenceScanError(f"reference scan {folder}: {type(exc).__name__}: {exc}") from exc


def write_frame_diagnostic(
    diagnostics_dir: str | Path,
    index: int,
    refmap: ReferenceMap,
    reference_folder: Path,
    ref_capture: Capture,
    frame,
    image: np.ndarray,
    solution: FrameSolution,
) -> None:
    """Query frame `index`'s picture (calmon_core.diagnostics) in diagnostics_dir, its path in the
    frame's estimate. A picture that cannot be drawn never costs the estimate."""
    from calmon_core.diagnostics import SUFFIX, write_diagnostic

    out = Path(diagnostics_dir)
    path = out / f"{index:03d}_{Path(solution.estimate.image).stem}{SUFFIX}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_diagnostic(path, refmap, reference_folder, ref_capture, frame, image, solution)
        solution.estimate.diagnostic_picture = str(path)
    except (OSError, CaptureFormatError, cv2.error):
        pass


def estimate_offsets(
    reference_folder: str | Path,
    query_folder: str | Path,
    *,
    threshold_deg: float = DEFAULT_THRESHOLD_DEG,
    diagnostics_dir: str | Path | None = None,
    refine_focal: bool = True,
    features_cache: str | Path | None = None,
    check_identity: bool = True,
) -> Estimate:
    """Offsets (true - reported) of a query capture against a reference scan (both calmon.capture/1).

    Raises CaptureFormatError for bad input (ReferenceScanError when the reference is at fault);
    returns success=False with a failure_log when the images do not allow an estimate.
    refine_focal (default on) fits each query frame's focal length scale too: a zoom's focal
    length 2% off costs tenths of a degree when held fixed.
    features_cache: reference features missing or stale are built there, never into the reference
    folder (which may be someone's read-only copy). check_identity (default on): a reference and a
    query of different devices or deployments, or swapped, raise IdentityMismatchError."""
    reference_folder, query_folder = Path(reference_folder), Path(query_folder)
    query = read_capture(query_folder)
    if check_identity:
        try:
            reference_manifest = read_capture(reference_folder)
        except CaptureFormatError as exc:
            raise ReferenceScanError(f"reference scan {reference_folder}: {exc}") from exc
        problems = identity_problems(reference_manifest, query)
        if problems:
            raise IdentityMismatchError(
                f"reference {reference_folder} and query {query_folder} are not one camera's scans: "
                + "; ".join(problems)
            )
    ref_capture, refmap = _load_reference(reference_folder, Path(features_cache) if features_cache else None)
    if not query.frames:
        raise CaptureFormatError(f"{query_folder / 'manifest.json'}: query has no frames")
    images = [load_frame_image(query_folder, query, i) for i in range(len(query.frames))]
    solutions = [
        estimate_frame(refmap, fr, img, refine_focal=refine_focal) for fr, img in zip(query.frames, images, strict=True)
    ]
    if diagnostics_dir is not None:
        for i, (sol, img) in enumerate(zip(solutions, images, strict=True)):
            write_frame_diagnostic(diagnostics_dir, i, refmap, reference_folder, ref_capture, query.frames[i], img, sol)
    frames = [s.estimate for s in solutions]
    offsets, sigma, used, note = combine_frames(frames, [refmap.gauge_uncertainty()] * len(frames))
    if not used:
        logs = "; ".join(f.failure_log or f.image for f in frames)
        return Estimate(False, None, None, None, frames, f"no query frame could be estimated: {logs}", 0, 0)
    return Estimate(
        True,
        offsets,
        sigma,
        is_breach(offsets, threshold_deg),
        frames,
        note,
        int(sum(f.inliers for f in used)),
        len(used),
    )
