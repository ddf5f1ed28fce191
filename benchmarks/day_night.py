"""Day, night and seasons: accuracy of the offset estimator when the light or the world changed.

Per scene: a daylight reference grid (the accuracy benchmark's: 1280x720, hfov 60), then query
frames at random reported poses, true offsets and zooms (benchmarks/accuracy.py's random views),
rendered under each condition by the simulator's lighting (calmon_sim.lighting: infrared night,
dusk, very dark infrared, snow, autumn, a parked truck). Each query is estimated against the day
reference only, and (for the conditions that have one) against the reference bank with an entry of
that condition: a scan of the same grid collected under it while the camera had a different offset,
registered to the day reference (calmon_core.reference_bank), so the entry's own error counts too.
--lens renders every scan and query through a simulated lens (calmon_sim.fleet_spec.LENS_PRESETS;
calmon is only told the datasheet's hfov), and the scans then carry the accuracy benchmark's zoom
sweep so the reference calibrates the lens across zoom. Low-light frames (queries and bank scans)
are what calmon's capture keeps: the mean of a burst of --burst snapshots (calmon_core.stacking;
--burst 1: single snapshots).

Per condition and method: conclusive %, median / p95 / max of the largest per-axis |error| (deg),
confident-wrong (conclusive with an error > 0.2 deg), median inliers, bank registration error.

    .venv/bin/python benchmarks/day_night.py [--cases N] [--scenes a.jpg,b.jpg] [--conditions night,winter] [--lens strong]
        [--burst N]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks.* beside calmon
from benchmarks.accuracy import CONFIDENT_WRONG_DEG, DEFAULT_SCENES, PITCHES, QUERY_PITCHES, QUERY_YAWS, YAWS  # noqa: E402
from calmon_core import features, photometry  # noqa: E402
from calmon_core.conventions import angle_offsets  # noqa: E402
from calmon_core.estimation import ALGORITHM_VERSION, _load_reference, combine_frames, estimate_frame  # noqa: E402
from calmon_core.reference_bank import add_bank_entry  # noqa: E402
from calmon_core.stacking import LOW_LIGHT_FRAMES  # noqa: E402
from calmon_sim.cases import random_view  # noqa: E402
from calmon_sim.fleet_spec import LENS_PRESETS  # noqa: E402
from calmon_sim.lighting import Conditions, SceneChange  # noqa: E402
from calmon_sim.lit_cases import query_frame, write_scan  # noqa: E402
from calmon_sim.scene import default_scenes_dir, load_scene  # noqa: E402

AXES = ("yaw", "pitch", "roll")
BANK_SCAN_OFFSET = (0.37, -0.21, 0.12)  # the camera's offset when the bank entry was collected
CONDITIONS = {
    "day": Conditions(),
    "dusk": Conditions("dusk", twilight=0.7),
    "night": Conditions("night"),
    "night-dark": Conditions("night", ir_gain=0.08),  # weak illuminator: mean grey below 10
    "winter": Conditions("day", "winter"),
    "autumn": Conditions("day", "autumn"),
    "truck": Conditions("day", changes=(SceneChange(yaw=10.0, pitch=-4.0, width_deg=14.0, height_deg=5.0),)),
    "winter-night": Conditions("night", "winter"),
}
BANKED = {"night", "night-dark", "winter", "autumn", "winter-night", "dusk"}
JPEG_QUALITY = 90


def summarise(rows: list[tuple[bool, np.ndarray | None, int, np.ndarray | None]]) -> dict:
    ok = [r for r in rows if r[0]]
    err = np.array([np.max(np.abs(r[1])) for r in ok]) if ok else np.array([np.nan])
    z = "-"
    if ok:
        zs = np.abs(np.array([r[1] / r[3] for r in ok]))
        z = "/".join(f"{np.percentile(zs[:, i], 95):.1f}" for i in range(3))
    return {
        "n": len(rows),
        "conclusive": len(ok) / max(1, len(rows)),
        "med": float(np.median(err)),
        "p95": float(np.percentile(err, 95)),
        "max": float(np.max(err)),
        "wrong": sum(1 for r in ok if np.max(np.abs(r[1])) > CONFIDENT_WRONG_DEG),
        "inliers": int(np.median([r[2] for r in rows])) if rows else 0,
        "z": z,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=6, help="query frames per scene and condition")
    parser.add_argument("--scenes", default=",".join(DEFAULT_SCENES))
    parser.add_argument("--conditions", default="day,night,night-dark,dusk,winter,autumn,truck")
    parser.add_argument("--no-bank", action="store_true", help="only against the day reference")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--preprocess", default=photometry.METHOD, choices=photometry.METHODS, help="feature preprocessing"
    )
    parser.add_argument("--worst", action="store_true", help="list failures and the worst frames")
    parser.add_argument("--lens", default="none", choices=list(LENS_PRESETS), help="the cameras' true lens")
    parser.add_argument(
        "--sweep",
        default=None,
        help="the scans' zoom sweep ('' for none; default: none without a lens, else 1.4,2,2.8,4)",
    )
    parser.add_argument(
        "--burst", type=int, default=LOW_LIGHT_FRAMES, help="snapshots averaged into a low-light frame (1: none)"
    )
    parser.add_argument(
        "--query-detect-width",
        type=int,
        default=features.QUERY_DETECT_MAX_WIDTH,
        help="features.QUERY_DETECT_MAX_WIDTH for this run: the widest level a query's keypoints are detected on",
    )
    args = parser.parse_args()
    features.QUERY_DETECT_MAX_WIDTH = args.query_detect_width
    lens = LENS_PRESETS[args.lens]
    sweep_text = args.sweep if args.sweep is not None else ("" if args.lens == "none" else "1.4,2,2.8,4")
    sweep = [float(x) for x in sweep_text.split(",") if x]
    cv2.setNumThreads(1)
    photometry.METHOD = args.preprocess
    conditions = args.conditions.split(",")
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        parser.error(f"unknown conditions {unknown} (known: {', '.join(CONDITIONS)})")
    results: dict[tuple[str, str], list] = {}
    registration: dict[str, list[float]] = {}
    notes: list[str] = []
    t0 = time.time()
    rng_views = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="calmon-daynight-") as tmp:
        for s_i, name in enumerate(args.scenes.split(",")):
            scene = load_scene(str(default_scenes_dir() / name))
            ref = write_scan(
                Path(tmp) / f"ref{s_i}", scene, YAWS, PITCHES, rng=np.random.default_rng(s_i), lens=lens, zooms=sweep
            )
            day_map = _load_reference(ref)[1]
            views = [random_view(rng_views, QUERY_YAWS, QUERY_PITCHES) for _ in range(args.cases)]
            for c_name in conditions:
                cond = CONDITIONS[c_name]
                rng = np.random.default_rng(1000 * s_i + zlib.crc32(c_name.encode()) % 997)
                bank_map = None
                if c_name in BANKED and not args.no_bank:
                    scan = write_scan(
                        Path(tmp) / f"scan{s_i}-{c_name}",
                        scene,
                        YAWS,
                        PITCHES,
                        conditions=cond,
                        offset=BANK_SCAN_OFFSET,
                        rng=rng,
                        lens=lens,
                        zooms=sweep,
                        burst=args.burst,
                    )
                    try:
                        reg = add_bank_entry(ref, scan, c_name, regime=cond.regime, season=cond.season)
                        registration.setdefault(c_name, []).append(
                            max(abs(reg.correction_deg[a] - o) for a, o in zip(AXES, BANK_SCAN_OFFSET, strict=True))
                        )
                        bank_map = _load_reference(ref / "bank" / c_name)[1]
                    except Exception as exc:  # noqa: BLE001 - a failed registration is a result here
                        notes.append(f"{name} {c_name}: bank entry not registered: {exc}")
                for i, view in enumerate(views):
                    frame, image = query_frame(
                        scene, cond, view, i, rng, jpeg_quality=JPEG_QUALITY, lens=lens, burst=args.burst
                    )
                    for method, refmap in (("day-ref", day_map), ("bank", bank_map)):
                        if refmap is None:
                            continue
                        fe = estimate_frame(refmap, frame, image).estimate
                        # a one-frame check's sigma: the frame's own and its reference's gauge error
                        combine_frames([fe], [refmap.gauge_uncertainty()])
                        err = sigma = None
                        if fe.success:
                            err = np.array(angle_offsets(tuple(fe.offsets_deg[a] for a in AXES), view.offset))
                            sigma = np.array([fe.uncertainty_deg[a] for a in AXES])
                        results.setdefault((c_name, method), []).append((fe.success, err, fe.inliers, sigma))
                        if args.worst and (not fe.success or np.max(np.abs(err)) > 0.02):
                            mean = float(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).mean())
                            notes.append(
                                f"{name} {c_name} {method} hfov {view.hfov_deg:.0f} mean grey {mean:.0f} "
                                f"inliers {fe.inliers} err {None if err is None else np.round(err, 4)} "
                                f"sigma {sigma} "
                                f"{fe.failure_log or ''}"
                            )
            print(f"  scene {name}: done at {time.time() - t0:.0f} s", flush=True)
    print(
        f"\ncalmon {ALGORITHM_VERSION}, preprocessing {photometry.METHOD}, queries detected on a level <= "
        f"{features.QUERY_DETECT_MAX_WIDTH} px wide, lens {args.lens}, zoom sweep {sweep}, "
        f"low-light bursts of {args.burst}; "
        f"{len(args.scenes.split(','))} scenes x {args.cases} query frames per "
        f"condition; error = largest per-axis |estimated - true offset| (deg); bank entries collected "
        f"with the camera {BANK_SCAN_OFFSET} off and registered to the day reference; "
        "z = |error|/uncertainty per axis"
    )
    head = (
        f"{'condition':<13} {'against':<8} {'n':>4} {'concl':>6} {'median':>8} {'p95':>8} {'max':>8} "
        f"{'conf-wrong':>10} {'inliers':>8} {'z p95 y/p/r':>14} {'bank reg err':>12}"
    )
    print(head)
    print("-" * len(head))
    for c_name in conditions:
        for method in ("day-ref", "bank"):
            rows = results.get((c_name, method))
            if not rows:
                continue
            s = summarise(rows)
            reg = registration.get(c_name) if method == "bank" else None
            reg_txt = f"{max(reg):.4f}" if reg else ""
            print(
                f"{c_name:<13} {method:<8} {s['n']:>4} {100 * s['conclusive']:5.0f}% {s['med']:8.4f} "
                f"{s['p95']:8.4f} {s['max']:8.4f} {s['wrong']:>10} {s['inliers']:>8} {s['z']:>14} {reg_txt:>12}"
            )
    for note in notes:
        print("  " + note)
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
