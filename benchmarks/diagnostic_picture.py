"""What a check's diagnostic picture costs to write and to keep, as a JPEG (what calmon writes) and
as a PNG (what it wrote before), paired: the same query frames' pictures in both formats, one
after the other in alternating order, in one process on one OpenCV thread.

Real scene photographs (../shared/data/scenes or CALMON_SCENES_DIR) seen through a reference grid
at the resolution given, one-frame queries within 1 deg of their reported pose. Prints per format
the CPU per picture (median, process time) and its size, and the bytes a year of hourly checks of
1,000 cameras would keep.

    .venv/bin/python benchmarks/diagnostic_picture.py [--resolution 1920x1080] [--checks 4] [--scenes a.jpg,b.jpg]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import calmon_sim.cases as cases  # noqa: E402
from calmon_core.capture_format import load_frame_image, read_capture  # noqa: E402
from calmon_core.diagnostics import JPEG_QUALITY, write_diagnostic  # noqa: E402
from calmon_core.estimation import _load_reference, estimate_frame  # noqa: E402
from calmon_sim.scene import load_scene  # noqa: E402

CHECKS_PER_YEAR = 1000 * 24 * 365


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", default="1920x1080")
    parser.add_argument("--checks", type=int, default=4, help="query frames per scene")
    parser.add_argument("--scenes", default="equirec2perspec_image.jpg,aframe_puydesancy.jpg,aframe_louvre_night.jpg")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as the checks' processes run (calmon_assets.defs.cpu_slots)
    scenes_dir = Path(os.environ.get("CALMON_SCENES_DIR", ROOT.parent / "shared" / "data" / "scenes"))
    w, h = (int(x) for x in args.resolution.lower().split("x"))
    cpu: dict[str, list[float]] = {".jpg": [], ".png": []}
    size: dict[str, list[int]] = {".jpg": [], ".png": []}
    for name in args.scenes.split(","):
        path = scenes_dir / name
        if not path.is_file():
            raise SystemExit(f"{path}: no such scene (set CALMON_SCENES_DIR)")
        scene = load_scene(str(path))
        rng = np.random.default_rng(args.seed)
        with tempfile.TemporaryDirectory(prefix="calmon-diagpic-") as tmp:
            root = Path(tmp)
            ref = cases.write_reference(root / "ref", scene, [-40.0, -10.0, 20.0, 50.0], [-6.0, 6.0], width=w, height=h)
            ref_capture, refmap = _load_reference(ref)
            for j in range(args.checks):
                view = cases.random_view(rng, [-30.0, 40.0], [-4.0, 4.0], hfov_range=(40, 60), max_offset=1.0)
                query = cases.write_query(root / f"q{j}", scene, [view], width=w, height=h)
                capture = read_capture(query)
                image = load_frame_image(query, capture, 0)
                solution = estimate_frame(refmap, capture.frames[0], image)
                order = (".jpg", ".png") if j % 2 == 0 else (".png", ".jpg")
                for suffix in order:
                    out = root / f"d{j}{suffix}"
                    start = time.process_time()
                    write_diagnostic(out, refmap, ref, ref_capture, capture.frames[0], image, solution)
                    cpu[suffix].append(time.process_time() - start)
                    size[suffix].append(out.stat().st_size)
        print(f"  {name} done", flush=True)
    n = len(cpu[".jpg"])
    print(
        f"\ndiagnostic picture per check: {n} query frames of {args.scenes} at {args.resolution}, "
        f"paired; one OpenCV thread; CPU = process time of write_diagnostic (drawing included)"
    )
    head = (
        f"{'format':<16} {'CPU ms med':>10} {'CPU ms max':>10} {'KB med':>8} {'KB max':>8} {'TB/year, 1000 cams':>19}"
    )
    print(head)
    print("-" * len(head))
    for suffix, label in ((".png", "PNG (before)"), (".jpg", f"JPEG q{JPEG_QUALITY} (now)")):
        kb = [s / 1024 for s in size[suffix]]
        year_tb = statistics.mean(size[suffix]) * CHECKS_PER_YEAR / 1e12
        print(
            f"{label:<16} {1000 * statistics.median(cpu[suffix]):>10.1f} {1000 * max(cpu[suffix]):>10.1f} "
            f"{statistics.median(kb):>8.0f} {max(kb):>8.0f} {year_tb:>19.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
