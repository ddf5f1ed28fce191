"""What one check puts into Dagster's event log, per `[ui] pictures` setting, and what reading it back
costs (the slack_alerts sensor and the partitions page parse every materialization they read).

The metadata is built by calmon's own functions (calmon_assets.defs.checks.asset_checks.result_metadata
and capture.capture_metadata's picture helper) for a conclusive check with a 48-check trend; the
diagnostic picture and the query frame are a 1920x1080 scene photograph (a real diagnostic is the
frame with matches drawn on it: the same JPEG entropy). "1000 px inline" is what every check stored
before previews (a 1000 px diagnostic and a 640 px frame inline), for comparison.

    .venv/bin/python benchmarks/event_size.py [--reads 200] [--devices 1000]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore")  # Dagster's preview/beta notices about calmon's own definitions
import dagster as dg  # noqa: E402
from dagster._serdes import deserialize_value, serialize_value  # noqa: E402

from calmon_assets.defs.checks.asset_checks import result_metadata  # noqa: E402
from calmon_assets.defs.checks.measure import Measurement  # noqa: E402
from calmon_assets.defs.metadata import PREVIEW_WIDTH_PX, image_md, picture_metadata  # noqa: E402
from calmon_core.models import CalibrationResult, CheckStatus  # noqa: E402
from calmon_core.plots import thumbnail_jpeg  # noqa: E402

FILES = "s3://camera-calibration-monitoring/site-00/cam-0000/query_scan/20261202T070000Z"


def _photo() -> bytes:
    scenes = Path(os.environ.get("CALMON_SCENES_DIR", ROOT.parent / "shared" / "data" / "scenes"))
    photo = next(iter(sorted(scenes.glob("*.jpg"))), None)
    if photo is None:
        raise SystemExit(f"no scene photograph in {scenes} (set CALMON_SCENES_DIR)")
    image = cv2.resize(cv2.imread(str(photo)), (1920, 1080), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".png", image)[1].tobytes()


def _rows(n: int) -> list[CalibrationResult]:
    rng = np.random.default_rng(0)
    start = datetime(2026, 11, 30, tzinfo=UTC)
    rows = []
    for h in range(n):
        t = start + timedelta(hours=h)
        rows.append(
            CalibrationResult(
                deployment_name="site-00",
                device_id="cam-0000",
                timestamp=t,
                check_partition=t.strftime("%Y-%m-%d-%H:%M"),
                yaw_offset=float(0.01 * h / 24 + rng.normal(0, 0.002)),
                pitch_offset=float(rng.normal(0, 0.002)),
                roll_offset=float(rng.normal(0, 0.002)),
                yaw_uncertainty=0.002,
                pitch_uncertainty=0.002,
                roll_uncertainty=0.003,
                success=True,
                status=CheckStatus.ok,
                inliers=1800,
                files_location=FILES,
                algorithm_version="1.4",
            )
        )
    return rows


def _event(metadata: dict) -> str:
    return serialize_value(
        dg.AssetMaterialization(
            asset_key="calibration_offsets", partition="cam-0000|2026-12-02-07:00", metadata=metadata
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=200, help="events parsed back per setting (a sensor tick's batch)")
    parser.add_argument("--devices", type=int, default=1000, help="fleet size for the per-year column")
    args = parser.parse_args()

    photo = _photo()
    *history, row = _rows(48)
    log = logging.getLogger("event_size")
    frame_uri = f"{FILES}/000_000.png"
    cases = {}
    for pictures in ("1000 px inline", "preview", "links"):
        measurement = Measurement(
            estimate={"frames": [{"yaw": 10.0, "pitch": 0.0, "inliers": 1800, "residual_px": 0.4}]},
            diagnostic_picture=photo,
            diagnostic_uri=f"{FILES}/diagnostics/000_000.jpg",
        )
        setting = "preview" if pictures == "1000 px inline" else pictures
        offsets = result_metadata(
            row, measurement, history, log, setting, lambda _data, name: f"{FILES}/diagnostics/{name}"
        )
        if pictures == "preview":
            frame = picture_metadata(
                "frame", thumbnail_jpeg(photo, PREVIEW_WIDTH_PX), frame_uri, "query frame", setting
            )
        elif pictures == "links":
            frame = picture_metadata("frame", None, frame_uri, "query frame", setting)
        else:
            offsets["diagnostic"] = image_md(thumbnail_jpeg(photo, 1000), "matches and view outlines")
            offsets.pop("diagnostic_file"), offsets.pop("trend_file")
            frame = {"frame": image_md(thumbnail_jpeg(photo, 640), "query frame")}
        cases[pictures] = (_event(offsets), _event(frame))

    print(f"one conclusive check's materializations (calibration_offsets + query_capture), {args.reads} parsed back")
    print(
        f"{'[ui] pictures':<16}{'offsets KB':>12}{'capture KB':>12}{'per check KB':>14}{'parse ms/check':>16}"
        f"{'GB/year, ' + str(args.devices) + ' devices':>26}"
    )
    for name, (offsets, frame) in cases.items():
        started = time.perf_counter()
        for _ in range(args.reads):
            deserialize_value(offsets, dg.AssetMaterialization)
            deserialize_value(frame, dg.AssetMaterialization)
        parse_ms = (time.perf_counter() - started) / args.reads * 1000
        per_check = len(offsets) + len(frame)
        per_year = per_check * args.devices * 24 * 365 / 1e9
        print(
            f"{name:<16}{len(offsets) / 1000:>12.1f}{len(frame) / 1000:>12.1f}{per_check / 1000:>14.1f}"
            f"{parse_ms:>16.2f}{per_year:>26.0f}"
        )
    print("(event payloads only: the run's other events and the index add ~10 KB per check on SQLite)")


if __name__ == "__main__":
    main()
