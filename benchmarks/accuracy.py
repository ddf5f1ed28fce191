"""Accuracy of the offset estimator on rendered real scenes, against a textbook baseline.

Per simulated lens (none = perfect pinhole, typical, strong: calmon_sim.fleet_spec.LENS_PRESETS;
calmon is only told the datasheet's hfov) and equirectangular scene: a reference grid (1280x720 or
--resolution, hfov 60, clean) with a short zoom sweep, then query frames at random reported poses inside the grid's cover, random true offsets (each angle
in [-3, 3] deg, with exact zeros and values near +-0.5), random zoom (hfov 15-60, rendered at fewer
pixels when narrow so a pixel stays at least half a source pixel), at degradation levels 0, 1, 2.
The same frames go through calmon and through the textbook baseline (SIFT + ratio test +
cv2.findHomography RANSAC to the best reference frame + rotation from K^-1 H K orthonormalised).
Per lens, level and method it prints median / p95 / max absolute error per axis, the p95 of
|error| / reported uncertainty per axis (is the uncertainty honest?), inconclusive rate,
confident-wrong count (success with any |error| > 0.2 deg), breach classification errors at 0.5 deg
(true offsets inside [0.45, 0.55] excluded), and CPU seconds per query frame, median and p95 (process
time, OpenCV and BLAS on one thread; reference features precomputed). A sky-only and a
blank view per scene and level must come back inconclusive (they are not in the table's rows).
Then the reference scans' self-calibrated lenses and refined frame orientations against the truth.

    .venv/bin/python benchmarks/accuracy.py [--cases N] [--scenes a.jpg,b.jpg] [--levels 0,1,2] [--lenses none,typical,strong]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import calmon_core.features as features  # noqa: E402
from calmon_core.capture_format import load_frame_image, read_capture  # noqa: E402
from calmon_core.conventions import (  # noqa: E402
    angle_offsets,
    rotation_from_ypr,
    ypr_from_rotation,
)
from calmon_core.estimation import ALGORITHM_VERSION, estimate_frame  # noqa: E402
from calmon_core.features import build_reference_features, load_reference_map  # noqa: E402
from calmon_sim.cases import QueryView, random_view, write_query, write_reference  # noqa: E402
from calmon_sim.fleet_spec import LENS_PRESETS, SimLens  # noqa: E402
from calmon_sim.scene import load_scene  # noqa: E402

AXES = ("yaw", "pitch", "roll")
YAWS = [-60.0, -20.0, 20.0, 60.0]
PITCHES = [-10.0, 20.0]
QUERY_YAWS, QUERY_PITCHES = [-55.0, 55.0], [-8.0, 18.0]  # reported poses inside the grid's cover
DEFAULT_SCENES = [
    "equirec2perspec_image.jpg",
    "aframe_puydesancy.jpg",
    "pannellum_examplepano.jpg",
    "aframe_louvre_night.jpg",
]
CONFIDENT_WRONG_DEG = 0.2
THRESHOLD = 0.5


@dataclass
class Outcome:
    success: bool
    error: np.ndarray | None  # estimated - true offset per axis
    true_offset: tuple[float, float, float]
    estimated_offset: np.ndarray | None
    seconds: float
    sigma: np.ndarray | None = None
    note: str = ""


class TextbookBaseline:
    """SIFT + ratio test + one RANSAC homography to the best reference frame, R from K^-1 H K."""

    def __init__(self, reference: Path):
        self.capture = read_capture(reference)
        self.sift = cv2.SIFT_create(nfeatures=4000)  # the same keypoint cap as calmon
        self.frames = []
        for i, fr in enumerate(self.capture.frames):
            gray = cv2.cvtColor(load_frame_image(reference, self.capture, i), cv2.COLOR_BGR2GRAY)
            kp, desc = self.sift.detectAndCompute(gray, None)
            t = fr.telemetry
            self.frames.append(
                (
                    np.array([k.pt for k in kp]),
                    desc,
                    fr.intrinsics().matrix(),
                    rotation_from_ypr(t.yaw, t.pitch, t.roll),
                )
            )
        self.matcher = cv2.BFMatcher(cv2.NORM_L2)

    def estimate(self, frame, image) -> tuple[bool, np.ndarray | None]:
        t = frame.telemetry
        k_q = frame.intrinsics().matrix()
        kp, desc = self.sift.detectAndCompute(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), None)
        if desc is None or len(kp) < 10:
            return False, None
        uv_q = np.array([k.pt for k in kp])
        best = None
        for uv_r, desc_r, k_r, r_r in self.frames:
            if desc_r is None or len(desc_r) < 2:  # a featureless reference frame (sky)
                continue
            pairs = [
                m[0]
                for m in self.matcher.knnMatch(desc, desc_r, k=2)
                if len(m) == 2 and m[0].distance < 0.75 * m[1].distance
            ]
            if len(pairs) < 10:
                continue
            a = uv_q[[m.queryIdx for m in pairs]]
            b = uv_r[[m.trainIdx for m in pairs]]
            h, mask = cv2.findHomography(a, b, cv2.RANSAC, 3.0)
            if h is None:
                continue
            n = int(mask.sum())
            if best is None or n > best[0]:
                best = (n, h, k_r, r_r)
        if best is None or best[0] < 15:
            return False, None
        _, h, k_r, r_r = best
        m = np.linalg.inv(k_r) @ h @ k_q  # ~ R_r^T R_q up to scale
        u, _, vt = np.linalg.svd(m)
        rel = u @ vt
        if np.linalg.det(rel) < 0:
            rel = -rel
        est = ypr_from_rotation(r_r @ rel)
        return True, np.array(angle_offsets(est, (t.yaw, t.pitch, t.roll)))


def _run_case(method, frame, image, view: QueryView) -> Outcome:
    start = time.process_time()
    if method == "calmon":
        refmap = _run_case.refmap
        fe = estimate_frame(refmap, frame, image).estimate
        ok = fe.success
        off = np.array([fe.offsets_deg[a] for a in AXES]) if ok else None
        sigma = np.array([fe.uncertainty_deg[a] for a in AXES]) if ok else None
        note = f"{_run_case.scene} hfov {view.hfov_deg:.0f} {frame.width}px inliers {fe.inliers} " + (
            fe.failure_log or ""
        )
    else:
        ok, off = _run_case.baseline.estimate(frame, image)
        sigma, note = None, ""
    seconds = time.process_time() - start
    err = None if off is None else np.array(angle_offsets(tuple(off), view.offset))
    return Outcome(ok, err, view.offset, off, seconds, sigma, note)


def _summarise(outcomes: list[Outcome]) -> dict:
    ok = [o for o in outcomes if o.success]
    errs = np.abs(np.array([o.error for o in ok])) if ok else np.zeros((0, 3))
    wrong = sum(1 for o in ok if np.any(np.abs(o.error) > CONFIDENT_WRONG_DEG))
    breach_err = 0
    for o in ok:
        true_mag = max(abs(v) for v in o.true_offset)
        if 0.45 <= true_mag <= 0.55:
            continue
        if (true_mag > THRESHOLD) != bool(np.any(np.abs(o.estimated_offset) > THRESHOLD)):
            breach_err += 1
    stats = {}
    for i, a in enumerate(AXES):
        col = errs[:, i] if len(errs) else np.array([np.nan])
        stats[a] = (np.median(col), np.percentile(col, 95), np.max(col))
    z = "-"
    if ok and ok[0].sigma is not None:
        zs = np.abs(np.array([o.error / o.sigma for o in ok]))
        z = "/".join(f"{np.percentile(zs[:, i], 95):.1f}" for i in range(3))
    return {
        "z": z,
        "n": len(outcomes),
        "ok": len(ok),
        "stats": stats,
        "inconclusive": 1 - len(ok) / max(1, len(outcomes)),
        "wrong": wrong,
        "breach_err": breach_err,
        "sec": float(np.median([o.seconds for o in outcomes])),
        "sec_p95": float(np.percentile([o.seconds for o in outcomes], 95)),
    }


def _calibration_vs_truth(refmap, lens: SimLens, width: int, height: int) -> list[str]:
    """The reference scan's self-calibrated lens against the simulator's truth, per zoom."""
    cal = getattr(refmap, "lens_calibration", None)
    if cal is None:
        return ["no lens calibration in the reference map"]
    lines = []
    for z in cal.zooms:
        w, h = z.lens.width, z.lens.height
        k, dist = lens.camera(z.zoom, 60.0 / z.zoom, w, h, width)
        lines.append(
            f"zoom {z.zoom:4.2f} ({z.frames} frames, rms {z.rms_px:.2f} px): k1 {z.lens.k1:+.4f} (true {dist[0]:+.4f}), "
            f"k2 {z.lens.k2:+.4f} (true {dist[1]:+.4f}), focal {z.lens.fx:8.2f} (true {k[0, 0]:8.2f}, "
            f"err {100 * (z.lens.fx / k[0, 0] - 1):+.3f}%), centre err "
            f"({z.lens.cx - k[0, 2]:+.2f}, {z.lens.cy - k[1, 2]:+.2f}) px of {w}"
        )
    return lines


def _orientations_vs_truth(refmap) -> str:
    """The reference frames' refined orientations against the truth (the scan's frames are rendered
    at their reported pose): largest |error| per axis at zoom 1 and in the zoom sweep. A query
    matched to a frame inherits that frame's error, whatever its own fit says."""
    parts = []
    for label, keep in (("zoom 1", lambda z: z == 1.0), ("sweep", lambda z: z != 1.0)):
        errors = [angle_offsets(ypr_from_rotation(fr.rotation), fr.reported) for fr in refmap.frames if keep(fr.zoom)]
        if errors:
            worst = np.max(np.abs(np.array(errors)), axis=0)
            parts.append(f"{label} ({len(errors)} frames) max |err| y/p/r " + "/".join(f"{e:.4f}" for e in worst))
    return "reference orientations vs truth: " + ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=8, help="query frames per scene and level")
    parser.add_argument("--scenes", default=",".join(DEFAULT_SCENES))
    parser.add_argument("--levels", default="0,1,2")
    parser.add_argument("--lenses", default="none,typical,strong", help=f"of {', '.join(LENS_PRESETS)}")
    parser.add_argument("--sweep", default="1.4,2,2.8,4", help="the reference scan's zoom sweep ('' for none)")
    parser.add_argument("--resolution", default="1280x720", help="frame size at zoom 1, WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--worst", type=int, default=0, help="list the N worst calmon frames")
    parser.add_argument(
        "--no-reference-refinement",
        action="store_true",
        help="ablation: keep the reference frames at their reported rotations",
    )
    parser.add_argument(
        "--query-detect-width",
        type=int,
        default=features.QUERY_DETECT_MAX_WIDTH,
        help="features.QUERY_DETECT_MAX_WIDTH for this run: the widest level a query's keypoints are detected on",
    )
    parser.add_argument(
        "--query-nfeatures",
        type=int,
        default=features.QUERY_NFEATURES,
        help="features.QUERY_NFEATURES for this run: the most keypoints a query frame keeps",
    )
    args = parser.parse_args()
    features.QUERY_DETECT_MAX_WIDTH = args.query_detect_width
    features.QUERY_NFEATURES = args.query_nfeatures
    if args.no_reference_refinement:
        import calmon_core.reference_map as reference_map

        reference_map.refine_reference_rotations = lambda refmap, **_: {}
    cv2.setNumThreads(1)  # the speed target is per core
    width, height = (int(x) for x in args.resolution.lower().split("x"))
    levels = [int(x) for x in args.levels.split(",")]
    lenses = args.lenses.split(",")
    sweep = [float(x) for x in args.sweep.split(",") if x]
    methods = ["calmon"] + ([] if args.no_baseline else ["baseline"])
    results: dict[tuple[str, str, int], list[Outcome]] = {
        (ln, m, lv): [] for ln in lenses for m in methods for lv in levels
    }
    special = {(ln, lv): [0, 0] for ln in lenses for lv in levels}  # sky/blank views: [count, estimated]
    calibration: dict[str, list[str]] = {ln: [] for ln in lenses}
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="calmon-accuracy-") as tmp:
        for lens_name in lenses:
            lens = LENS_PRESETS[lens_name]
            rng = np.random.default_rng(args.seed)  # the same views for every lens
            for s_i, name in enumerate(args.scenes.split(",")):
                scene = load_scene(name)  # a file of the scenes folder, or synthetic:<seed>
                _run_case.scene = name
                ref = write_reference(
                    Path(tmp) / f"{lens_name}-ref{s_i}",
                    scene,
                    YAWS,
                    PITCHES,
                    rng=np.random.default_rng(s_i),
                    lens=lens,
                    zooms=sweep,
                    width=width,
                    height=height,
                )
                build_reference_features(ref)
                _run_case.refmap = load_reference_map(ref)
                calibration[lens_name] += [
                    f"{name}: {line}" for line in _calibration_vs_truth(_run_case.refmap, lens, width, height)
                ] + [f"{name}: {_orientations_vs_truth(_run_case.refmap)}"]
                if not args.no_baseline:
                    _run_case.baseline = TextbookBaseline(ref)
                views = [random_view(rng, QUERY_YAWS, QUERY_PITCHES) for _ in range(args.cases)]
                hard = [QueryView((float(rng.uniform(-50, 50)), 82.0, 0.0), (0.4, 0.0, 0.0), 40.0)]
                for lv in levels:
                    q = write_query(
                        Path(tmp) / f"{lens_name}-q{s_i}-{lv}",
                        scene,
                        views + hard,
                        level=lv,
                        rng=np.random.default_rng(1000 * s_i + lv),
                        lens=lens,
                        width=width,
                        height=height,
                    )
                    cap = read_capture(q)
                    for i, view in enumerate(views + hard):
                        image = load_frame_image(q, cap, i)
                        blank = np.full_like(image, 110)
                        for method in methods:
                            if i < len(views):
                                results[(lens_name, method, lv)].append(_run_case(method, cap.frames[i], image, view))
                        if i >= len(views):
                            for img in (image, blank):
                                out = _run_case("calmon", cap.frames[i], img, view)
                                special[(lens_name, lv)][0] += 1
                                special[(lens_name, lv)][1] += int(
                                    out.success and np.any(np.abs(out.error) > CONFIDENT_WRONG_DEG)
                                )
                print(f"  lens {lens_name}, scene {name}: done at {time.time() - t0:.0f} s", flush=True)
    print(
        f"\ncalmon {ALGORITHM_VERSION}; {len(args.scenes.split(','))} scenes x {args.cases} "
        f"query frames per lens and level; errors in degrees (abs), {width}x{height} reference + zoom sweep "
        f"{sweep}, hfov 15-60 queries; queries detected on a level <= {features.QUERY_DETECT_MAX_WIDTH} px "
        f"wide, at most {features.QUERY_NFEATURES} keypoints; z = |error|/uncertainty (calmon)"
    )
    head = (
        f"{'lens':<8} {'level':>5} {'method':<9} {'n':>4} "
        + " ".join(f"{a + ' med/p95/max':>26}" for a in AXES)
        + f" {'z p95 y/p/r':>16} {'inconcl':>8} {'conf-wrong':>10} {'breach-err':>10} {'s/frame med/p95':>15}"
    )
    print(head)
    print("-" * len(head))
    for lens_name in lenses:
        for lv in levels:
            for m in methods:
                s = _summarise(results[(lens_name, m, lv)])
                cols = " ".join(f"{st[0]:8.4f}/{st[1]:7.4f}/{st[2]:8.4f}" for st in (s["stats"][a] for a in AXES))
                print(
                    f"{lens_name:<8} {lv:>5} {m:<9} {s['n']:>4} {cols} {s['z']:>16} {100 * s['inconclusive']:7.1f}% "
                    f"{s['wrong']:>10} {s['breach_err']:>10} {s['sec']:7.3f}/{s['sec_p95']:.3f}"
                )
            cal = _summarise(results[(lens_name, "calmon", lv)])
            if "baseline" in methods:
                base = _summarise(results[(lens_name, "baseline", lv)])
                ratio = [base["stats"][a][1] / max(cal["stats"][a][1], 1e-9) for a in AXES]
                print(
                    f"{'':>14} p95 baseline/calmon: "
                    + ", ".join(f"{a} {r:.1f}x" for a, r in zip(AXES, ratio, strict=True) if math.isfinite(r))
                )
            sp = special[(lens_name, lv)]
            print(f"{'':>14} sky-only/blank views: {sp[0]}, confidently wrong: {sp[1]}")
    for lens_name in lenses:
        print(f"self-calibrated lens and reference orientations vs truth, lens {lens_name}:")
        for line in calibration[lens_name]:
            print(f"  {line}")
    cal = [o for k, v in results.items() if k[1] == "calmon" for o in v if o.success]
    for o in sorted(cal, key=lambda o: -np.max(np.abs(o.error)))[: args.worst]:
        print(f"  err {np.round(o.error, 4)} sigma {o.sigma} {o.note}")
    for k, v in results.items():
        for o in v:
            if k[1] == "calmon" and not o.success and args.worst:
                print(f"  inconclusive (lens {k[0]}, level {k[2]}): {o.note}")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
