"""A picture per query frame for people and asset metadata: query (left) and the reference frame
with most inliers (right), inlier matches as lines, and on the reference the query's view outline
where telemetry says it looked (red) and where the estimate says it looked (green)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from calmon_core.capture_format import load_frame_image
from calmon_core.conventions import rotation_from_ypr

RED, GREEN, YELLOW = (0, 0, 255), (0, 200, 0), (0, 220, 255)
HEIGHT = 480
# a JPEG: the picture is two photographs side by side, which PNG stores at 0.8-1.2 MB (five to eight
# times the JPEG) and encodes ten times slower; at quality 90 the lines and the text stay sharp
SUFFIX = ".jpg"
JPEG_QUALITY = 90


def _outline(lens_q, w: int, h: int, r_q: np.ndarray, lens_r, r_r: np.ndarray) -> np.ndarray:
    """The query frame's border, sampled densely, projected into the reference frame's pixels
    (through both lenses, calmon_core.lens)."""
    s = np.linspace(0, 1, 40)
    border = np.concatenate(
        [
            np.column_stack([s * (w - 1), np.zeros_like(s)]),
            np.column_stack([np.full_like(s, w - 1), s * (h - 1)]),
            np.column_stack([(1 - s) * (w - 1), np.full_like(s, h - 1)]),
            np.column_stack([np.zeros_like(s), (1 - s) * (h - 1)]),
        ]
    )
    world = lens_q.pixel_rays(border) @ r_q.T
    return lens_r.project(world @ r_r)


def _polyline(img: np.ndarray, pts: np.ndarray, scale: float, dx: int, color) -> None:
    ok = np.all(np.isfinite(pts), axis=1)
    if ok.sum() < 2:
        return
    p = np.round(pts[ok] * scale + [dx, 0]).astype(np.int32)
    p = np.clip(p, -10000, 10000)
    cv2.polylines(img, [p.reshape(-1, 1, 2)], True, color, 2, cv2.LINE_AA)


def write_diagnostic(
    path: str | Path, refmap, reference_folder: Path, ref_capture, frame, query_image: np.ndarray, solution
) -> Path:
    est = solution.estimate
    matches, mask = solution.matches, solution.inlier_mask
    t = frame.telemetry
    r_rep = rotation_from_ypr(t.yaw, t.pitch, t.roll)
    if matches is not None and mask is not None and mask.any():
        ids, counts = np.unique(matches.ref_frame[mask], return_counts=True)
        ref_i = int(ids[np.argmax(counts)])
    else:
        axes = np.array([f.rotation[:, 2] for f in refmap.frames])
        ref_i = int(np.argmax(axes @ r_rep[:, 2]))
    # the picture is HEIGHT px high: a tall reference frame is decoded at a fraction of its size
    ref_frame = ref_capture.frames[ref_i]
    reduced = max((r for r in (1, 2, 4) if ref_frame.height >= r * HEIGHT), default=1)
    ref_img = load_frame_image(reference_folder, ref_capture, ref_i, reduced=reduced)
    sq = HEIGHT / query_image.shape[0]
    sr = HEIGHT / ref_frame.height  # picture px per full-resolution reference px
    q = cv2.resize(query_image, (round(query_image.shape[1] * sq), HEIGHT), interpolation=cv2.INTER_AREA)
    r = cv2.resize(ref_img, (round(ref_frame.width * sr), HEIGHT), interpolation=cv2.INTER_AREA)
    canvas = np.concatenate([q, r], axis=1)
    dx = q.shape[1]
    if matches is not None and mask is not None:
        sel = mask & (matches.ref_frame == ref_i)
        for a, b in zip(
            matches.uv_query[sel][:: max(1, sel.sum() // 80)],
            matches.uv_ref[sel][:: max(1, sel.sum() // 80)],
            strict=True,
        ):
            pa = (int(a[0] * sq), int(a[1] * sq))
            pb = (int(b[0] * sr) + dx, int(b[1] * sr))
            cv2.line(canvas, pa, pb, YELLOW, 1, cv2.LINE_AA)
            cv2.circle(canvas, pa, 2, YELLOW, -1)
            cv2.circle(canvas, pb, 2, YELLOW, -1)
    w, h = frame.width, frame.height
    lens_q = refmap.lens_for(frame.lens(), t.zoom).lens
    rf = refmap.frames[ref_i]
    _polyline(canvas, _outline(lens_q, w, h, r_rep, rf.lens, rf.rotation), sr, dx, RED)
    if solution.rotation is not None:
        _polyline(canvas, _outline(lens_q, w, h, solution.rotation, rf.lens, rf.rotation), sr, dx, GREEN)
    if est.success:
        o = est.offsets_deg
        text = (
            f"{est.image}: yaw {o['yaw']:+.3f} pitch {o['pitch']:+.3f} roll {o['roll']:+.3f} "
            f"deg, {est.inliers} inliers (red reported, green estimated)"
        )
    else:
        text = f"{est.image}: inconclusive - {est.failure_log}"[:150]
    cv2.rectangle(canvas, (0, 0), (canvas.shape[1], 26), (0, 0, 0), -1)
    cv2.putText(canvas, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    path = Path(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), canvas, params):
        raise OSError(f"cannot write diagnostic picture {path}")
    return path
