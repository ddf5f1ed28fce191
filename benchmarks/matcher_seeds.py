"""Is the reported σ stable under the matcher's random trees?

FLANN's randomised KD-trees (calmon_core.matching) are seeded, so one query always gets the same
estimate; but the seed is arbitrary, and another one picks other approximate neighbours, so other
matches, inliers and a slightly different estimate. If that difference were comparable to σ, σ
would understate the estimate's real spread (and a check near the threshold could flip with the
seed). This rebuilds the reference features and trees under each of several seeds, estimates the
same query frames (benchmarks/day_night.py's views, rendered by day, at dusk and at night through
the simulator's lighting) against each, and prints per condition how far the offsets move between
seeds, in units of the σ reported with them, and how often the outcome (conclusive or not) differs.

    .venv/bin/python benchmarks/matcher_seeds.py [--seeds 4] [--cases 4] [--scenes a.jpg,b.jpg]
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
from benchmarks.accuracy import DEFAULT_SCENES, PITCHES, QUERY_PITCHES, QUERY_YAWS, YAWS  # noqa: E402
from benchmarks.day_night import CONDITIONS, JPEG_QUALITY  # noqa: E402
from calmon_core import matching  # noqa: E402
from calmon_core.conventions import angle_offsets  # noqa: E402
from calmon_core.estimation import ALGORITHM_VERSION, _load_reference, estimate_frame  # noqa: E402
from calmon_sim.cases import random_view  # noqa: E402
from calmon_sim.lit_cases import query_frame, write_scan  # noqa: E402
from calmon_sim.scene import default_scenes_dir, load_scene  # noqa: E402

AXES = ("yaw", "pitch", "roll")


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=4, help="FLANN seeds, the default one first")
    parser.add_argument("--cases", type=int, default=4, help="query frames per scene and condition")
    parser.add_argument("--scenes", default=",".join(DEFAULT_SCENES[:2]))
    parser.add_argument("--conditions", default="day,dusk,night")
    parser.add_argument("--seed", type=int, default=2026, help="the views' random seed")
    parser.add_argument("--verbose", action="store_true", help="print every frame's estimate under every seed")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    conditions = args.conditions.split(",")
    seeds = [matching.FLANN_SEED + i for i in range(args.seeds)]
    # per condition: per frame, each seed's (success, errors against the truth, sigmas)
    frames: dict[str, list[list[tuple[bool, np.ndarray | None, np.ndarray | None]]]] = {c: [] for c in conditions}
    t0 = time.time()
    rng_views = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="calmon-seeds-") as tmp:
        for s_i, name in enumerate(args.scenes.split(",")):
            scene = load_scene(str(default_scenes_dir() / name))
            ref = write_scan(Path(tmp) / f"ref{s_i}", scene, YAWS, PITCHES, rng=np.random.default_rng(s_i))
            maps = []
            for seed in seeds:  # the reference's trees are built (and saved) under the seed in force
                matching.FLANN_SEED = seed
                maps.append(_load_reference(ref, Path(tmp) / f"features{s_i}-{seed}")[1])
            views = [random_view(rng_views, QUERY_YAWS, QUERY_PITCHES) for _ in range(args.cases)]
            for c_name in conditions:
                rng = np.random.default_rng(1000 * s_i + zlib.crc32(c_name.encode()) % 997)
                for i, view in enumerate(views):
                    frame, image = query_frame(scene, CONDITIONS[c_name], view, i, rng, jpeg_quality=JPEG_QUALITY)
                    outcomes = []
                    for seed, refmap in zip(seeds, maps, strict=True):
                        matching.FLANN_SEED = seed  # and the query's own index, for the mutual check
                        fe = estimate_frame(refmap, frame, image).estimate
                        if fe.success:
                            estimated = tuple(fe.offsets_deg[a] for a in AXES)
                            errors = np.array(angle_offsets(estimated, view.offset))
                            sigmas = np.array([fe.uncertainty_deg[a] for a in AXES])
                            outcomes.append((True, errors, sigmas))
                        else:
                            outcomes.append((False, None, None))
                    frames[c_name].append(outcomes)
                    if args.verbose:
                        print(f"  {name} {c_name} frame {i} (true offset {np.round(view.offset, 4)}):")
                        for seed, (ok, errors, sigmas) in zip(seeds, outcomes, strict=True):
                            what = f"error {np.round(errors, 4)} σ {np.round(sigmas, 4)}" if ok else "no estimate"
                            print(f"    seed {seed}: {what}")
            print(f"  scene {name}: done at {time.time() - t0:.0f} s", flush=True)
    print(
        f"\ncalmon {ALGORITHM_VERSION}; {len(seeds)} FLANN seeds ({seeds[0]} is calmon's); "
        f"{len(args.scenes.split(','))} scenes x {args.cases} query frames per condition, against the day reference.\n"
        "spread = max - min of an axis's offset over the seeds of one frame; in σ: over the mean σ reported; "
        "z = |error| / σ per axis against the hidden truth, under calmon's seed and under all seeds"
    )
    head = (
        f"{'condition':<10} {'frames':>6} {'flips':>6} {'spread p95 deg y/p/r':>24} "
        f"{'spread/σ median':>16} {'spread/σ p95':>13} {'spread/σ max':>13} {'σ max/min p95':>14} "
        f"{'z p95 calmon':>13} {'z p95 all':>10} {'z max all':>10}"
    )
    print(head)
    print("-" * len(head))
    for c_name in conditions:
        spread: dict[str, list[float]] = {a: [] for a in AXES}
        in_sigma: list[float] = []
        sigma_ratio: list[float] = []
        flips = 0
        z_calmon: list[float] = []
        z_all: list[float] = []
        for outcomes in frames[c_name]:
            for k, (ok, errors, sigmas) in enumerate(outcomes):
                if ok:
                    z = list(np.abs(errors) / sigmas)
                    z_all += z
                    if k == 0:
                        z_calmon += z
            ok = [o for o in outcomes if o[0]]
            flips += 0 < len(ok) < len(outcomes)
            if len(ok) < 2:
                continue
            errors = np.array([o[1] for o in ok])  # spread like the offsets: the truth is one value
            sigmas = np.array([o[2] for o in ok])
            for j, axis in enumerate(AXES):
                width = float(errors[:, j].max() - errors[:, j].min())
                spread[axis].append(width)
                in_sigma.append(width / float(sigmas[:, j].mean()))
                sigma_ratio.append(float(sigmas[:, j].max() / sigmas[:, j].min()))
        cells = "/".join(f"{p95(spread[a]):.4f}" for a in AXES)
        print(
            f"{c_name:<10} {len(frames[c_name]):>6} {flips:>6} {cells:>24} "
            f"{float(np.median(in_sigma)) if in_sigma else float('nan'):>16.2f} {p95(in_sigma):>13.2f} "
            f"{max(in_sigma) if in_sigma else float('nan'):>13.2f} {p95(sigma_ratio):>14.2f} "
            f"{p95(z_calmon):>13.2f} {p95(z_all):>10.2f} {max(z_all) if z_all else float('nan'):>10.2f}"
        )
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
