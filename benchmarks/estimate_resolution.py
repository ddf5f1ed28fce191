"""CPU of one check's estimate (estimate_offsets on a one-frame passive query, diagnostics drawn, as
the calibration_offsets step calls it) at the resolutions cameras deliver, one process, serially.

A synthetic scene (8192x4096 panorama: enough source pixels for a 1920-wide 60 deg view) rendered
at each resolution as it is: a reference grid of 4 yaws x 2 pitches at hfov 60, then query frames at
hfov 60 with random true offsets within 1 deg of the reported pose. Prints per resolution the
reference build's CPU, the estimate's CPU per check (median) and the largest |error| per axis.

    .venv/bin/python benchmarks/estimate_resolution.py [--resolutions 640x360,1280x720,1920x1080] [--checks 3]
        [--detect-max-width W]   (features.DETECT_MAX_WIDTH for this run: what a smaller detection level costs)
        [--query-detect-width W] (features.QUERY_DETECT_MAX_WIDTH: the same for the queries alone)
        [--opencv-threads N]     (0: OpenCV's default pool; the checks' processes run with 1, calmon_assets.defs.cpu_slots)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import calmon_core.features as features  # noqa: E402
import calmon_sim.cases as cases  # noqa: E402
from calmon_core.estimation import ALGORITHM_VERSION, estimate_offsets  # noqa: E402
from calmon_core.features import build_reference_features  # noqa: E402
from calmon_sim.scene import load_scene  # noqa: E402

AXES = ("yaw", "pitch", "roll")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", default="640x360,1280x720,1920x1080")
    parser.add_argument("--checks", type=int, default=3, help="query captures per resolution")
    parser.add_argument("--scene", default="synthetic:0")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--detect-max-width", type=int, default=features.DETECT_MAX_WIDTH)
    parser.add_argument("--query-detect-width", type=int, default=features.QUERY_DETECT_MAX_WIDTH)
    parser.add_argument("--opencv-threads", type=int, default=1)
    args = parser.parse_args()
    if args.opencv_threads:
        cv2.setNumThreads(args.opencv_threads)
    features.DETECT_MAX_WIDTH = args.detect_max_width
    features.QUERY_DETECT_MAX_WIDTH = args.query_detect_width
    scene = load_scene(args.scene)
    rows = []
    for spec in args.resolutions.split(","):
        w, h = (int(x) for x in spec.lower().split("x"))
        with tempfile.TemporaryDirectory(prefix="calmon-estres-") as tmp:
            root = Path(tmp)
            rng = np.random.default_rng(args.seed)
            ref = cases.write_reference(root / "ref", scene, [-40.0, -10.0, 20.0, 50.0], [-6.0, 6.0], width=w, height=h)
            start = time.process_time()
            build_reference_features(ref)
            build_cpu = time.process_time() - start
            cpu, errors, inliers = [], [], []
            for j in range(args.checks):
                view = cases.random_view(rng, [-30.0, 40.0], [-4.0, 4.0], hfov_range=(60, 60), max_offset=1.0)
                query = cases.write_query(root / f"q{j}", scene, [view], width=w, height=h)
                start = time.process_time()
                estimate = estimate_offsets(ref, query, diagnostics_dir=root / f"d{j}", check_identity=False)
                cpu.append(time.process_time() - start)
                if estimate.success:
                    errors.append([abs(estimate.offsets_deg[a] - o) for a, o in zip(AXES, view.offset, strict=True)])
                    inliers.append(estimate.inliers)
            err = np.max(errors, axis=0) if errors else np.full(3, np.nan)
            rows.append((spec, build_cpu, statistics.median(cpu), len(errors), err, statistics.median(inliers or [0])))
        print(f"  {spec} done", flush=True)
    print(
        f"\n{ALGORITHM_VERSION}; scene {args.scene}; {args.checks} one-frame checks per resolution; "
        f"detection level <= {features.DETECT_MAX_WIDTH} px wide (queries <= {features.QUERY_DETECT_MAX_WIDTH}); "
        "OpenCV threads "
        f"{args.opencv_threads or 'default'}; CPU = process time"
    )
    head = f"{'resolution':<10} {'ref build CPU s':>15} {'estimate CPU s/check':>20} {'ok':>3} {'max |err| y/p/r deg':>24} {'inliers':>8}"
    print(head)
    print("-" * len(head))
    for spec, build_cpu, est_cpu, ok, err, inl in rows:
        errs = "/".join(f"{e:.4f}" for e in err)
        print(f"{spec:<10} {build_cpu:>15.2f} {est_cpu:>20.2f} {ok:>3} {errs:>24} {inl:>8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
