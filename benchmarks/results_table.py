"""Results table benchmark: bulk history load, hourly-cycle append latency, and the query times of
"latest result per device" and one device's history, before and after compaction.

"Latest per device" is timed both ways on the same table: from the history alone (the two-pass
scan calmon used before the current-state table, and still uses to rebuild it) and from the
current-state table; the first read after the bulk load builds that table (what an existing
instance pays once when it upgrades).

The full size is 1,000 devices x 1 year of hourly checks (8.76 M rows):

    .venv/bin/python benchmarks/results_table.py                 # full year (slow on 2 cores)
    .venv/bin/python benchmarks/results_table.py --days 30       # scaled down: says so in the output

History is generated with Arrow in big batches (one commit per --load-hours hours of the whole fleet,
so each (day, deployment) partition starts with 24 / load-hours files: the small files compaction
removes), then --cycles hourly check cycles go through ResultsTable.write(), the idempotent upsert the
platform uses, one commit of `devices` rows each.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calmon_assets.defs.checks.assets import FORECAST_HISTORY_ROWS  # noqa: E402
from calmon_core.config import ResultsSettings  # noqa: E402
from calmon_core.models import CalibrationResult, CheckStatus  # noqa: E402
from resources.results_table import ResultsTable, arrow_schema  # noqa: E402

# each check reads its device's last rows for the trend and forecast (the alert sensor as many)
HISTORY_ROWS = FORECAST_HISTORY_ROWS


def history_batch(devices: int, deployments: int, start: datetime, first_hour: int, hours: int, rng) -> pa.Table:
    """Rows for every device at each of `hours` hourly checks starting `first_hour` hours after start."""
    n = devices * hours
    device_index = np.tile(np.arange(devices), hours)
    hour_index = np.repeat(np.arange(first_hour, first_hour + hours), devices)
    start_us = int(start.timestamp() * 1_000_000)
    # captured a few minutes after the hour, like a real check
    ts_us = start_us + hour_index.astype(np.int64) * 3_600_000_000 + rng.integers(60, 600, n) * 1_000_000
    timestamps = pa.array(ts_us, type=pa.timestamp("us", tz="UTC"))
    hour_ts = pa.array(start_us + hour_index.astype(np.int64) * 3_600_000_000, type=pa.timestamp("us", tz="UTC"))
    device_names = np.array([f"cam-{i:04d}" for i in range(devices)], dtype=object)
    deployment_names = np.array([f"site-{i % deployments:02d}" for i in range(devices)], dtype=object)
    yaw = rng.normal(0, 0.2, n)
    pitch = rng.normal(0, 0.1, n)
    roll = rng.normal(0, 0.05, n)
    worst = np.maximum(np.abs(yaw), np.maximum(np.abs(pitch), np.abs(roll)))
    columns = {
        "deployment_name": pa.array(deployment_names[device_index], pa.string()),
        "device_id": pa.array(device_names[device_index], pa.string()),
        "timestamp": timestamps,
        "check_partition": pc.strftime(hour_ts, format="%Y-%m-%d-%H:00"),
        "pitch_offset": pitch,
        "yaw_offset": yaw,
        "roll_offset": roll,
        "pitch_uncertainty": np.full(n, 0.01),
        "yaw_uncertainty": np.full(n, 0.01),
        "roll_uncertainty": np.full(n, 0.02),
        "mode": pa.array(["passive"] * n, pa.string()),
        "capture_positions": pa.array(['[{"yaw":0.0,"pitch":0.0,"roll":0.0,"zoom":1.0}]'] * n, pa.string()),
        "files_location": pa.array([None] * n, pa.string()),
        "success": np.ones(n, dtype=bool),
        "status": pa.array(np.where(worst > 0.5, "breach", "ok"), pa.string()),
        "failure_log": pa.array([None] * n, pa.string()),
        "inliers": rng.integers(100, 600, n),
        "frames_used": np.full(n, 3),
        "threshold_deg": np.full(n, 0.5),
        "algorithm_version": pa.array(["bench"] * n, pa.string()),
        "run_id": pa.array([None] * n, pa.string()),
        "written_at": timestamps,
    }
    for name in arrow_schema().names:  # the forecast columns: not computed for bulk history
        columns.setdefault(name, pa.nulls(n, arrow_schema().field(name).type))
    return pa.table({name: columns[name] for name in arrow_schema().names}).cast(arrow_schema())


def cycle_rows(devices: int, deployments: int, start: datetime, hour: int, rng) -> list[CalibrationResult]:
    moment = start + timedelta(hours=hour, minutes=5)
    key = (start + timedelta(hours=hour)).strftime("%Y-%m-%d-%H:00")
    return [
        CalibrationResult(
            deployment_name=f"site-{i % deployments:02d}",
            device_id=f"cam-{i:04d}",
            timestamp=moment,
            check_partition=key,
            yaw_offset=float(rng.normal(0, 0.2)),
            pitch_offset=0.0,
            roll_offset=0.0,
            success=True,
            status=CheckStatus.ok,
            inliers=300,
            frames_used=3,
            algorithm_version="bench",
        )
        for i in range(devices)
    ]


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def measure_queries(table: ResultsTable, devices: int, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"latest": [], "latest_from_history": [], "history": []}
    for _ in range(repeats):
        seconds, latest = timed(table.latest_per_device)
        assert len(latest) == devices, f"latest_per_device gave {len(latest)} rows, expected {devices}"
        times["latest"].append(seconds)
        seconds, scanned = timed(table.latest_per_device_from_history)
        assert scanned == latest, "the current-state table and the history disagree"
        times["latest_from_history"].append(seconds)
        seconds, _ = timed(table.history, "cam-0007", None, HISTORY_ROWS)
        times["history"].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def measure_cycles(table, devices, deployments, start, first_hour, cycles, rng) -> list[float]:
    latencies = []
    for hour in range(first_hour, first_hour + cycles):
        rows = cycle_rows(devices, deployments, start, hour, rng)
        seconds, _ = timed(table.write, rows)
        latencies.append(seconds)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365, help="days of hourly history (365 = full size)")
    parser.add_argument("--deployments", type=int, default=10)
    parser.add_argument("--load-hours", type=int, default=6, help="hours of fleet history per bulk commit")
    parser.add_argument(
        "--cycles", type=int, default=12, help="hourly write() cycles timed before and after compaction"
    )
    parser.add_argument("--repeats", type=int, default=3, help="query repetitions (median reported)")
    parser.add_argument("--root", type=Path, help="folder for catalog + warehouse (default: a temp dir, removed)")
    args = parser.parse_args()

    root = args.root or Path(tempfile.mkdtemp(prefix="calmon-bench-"))
    rng = np.random.default_rng(7)
    table = ResultsTable(ResultsSettings(warehouse=str(root / "warehouse"), sqlite_path=str(root / "catalog.db")))
    table.ensure_table()
    total_hours = args.days * 24
    full = args.devices * total_hours
    # the history ends in the hour before now, as a live table's does: reads that look back from
    # now (history(limit=)) then meet what they would meet in production
    now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now_hour - timedelta(hours=total_hours + 2 * args.cycles + 1)
    scale = (
        ""
        if (args.devices, args.days) == (1000, 365)
        else ("  (SCALED DOWN from 1,000 devices x 365 days = 8,760,000 rows)")
    )
    print(f"results table benchmark: {args.devices} devices x {args.days} days hourly = {full:,} rows{scale}")
    print(f"  {args.deployments} deployments, bulk commits of {args.load_hours} h, warehouse {root}")

    load_seconds = 0.0
    generate_seconds = 0.0
    commits = 0
    for first_hour in range(0, total_hours, args.load_hours):
        hours = min(args.load_hours, total_hours - first_hour)
        seconds, batch = timed(history_batch, args.devices, args.deployments, start, first_hour, hours, rng)
        generate_seconds += seconds
        seconds, _ = timed(table.append_arrow, batch)
        load_seconds += seconds
        commits += 1
    files_loaded = table.file_count()
    migrate_seconds, _ = timed(table.latest_per_device)  # no current state yet: built from the history

    before_cycles = measure_cycles(table, args.devices, args.deployments, start, total_hours, args.cycles, rng)
    seconds_rewrite, _ = timed(table.write, cycle_rows(args.devices, args.deployments, start, total_hours, rng))
    before = measure_queries(table, args.devices, args.repeats)
    files_before = table.file_count()

    compact_seconds, report = timed(table.compact)

    after = measure_queries(table, args.devices, args.repeats)
    after_cycles = measure_cycles(
        table, args.devices, args.deployments, start, total_hours + args.cycles, args.cycles, rng
    )
    rows = full + 2 * args.cycles * args.devices

    def ms(values: list[float]) -> str:
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
        return f"median {statistics.median(values) * 1000:7.0f} ms, p95 {p95 * 1000:7.0f} ms"

    n = args.devices
    table_rows = [
        ("bulk load: rows/s (Arrow batches, append_arrow)", f"{full / load_seconds:,.0f} rows/s"),
        (
            "bulk load: commits, seconds (+ data generation)",
            f"{commits}, {load_seconds:.1f} s (+{generate_seconds:.1f} s)",
        ),
        ("data files after bulk load", f"{files_loaded:,}"),
        ("first latest-per-device: builds the current state", f"{migrate_seconds * 1000:.0f} ms"),
        (f"hourly cycle write() of {n} rows, before compaction", ms(before_cycles)),
        ("   rows/s through write(), before", f"{n / statistics.median(before_cycles):,.0f} rows/s"),
        ("re-write of a whole cycle (idempotent replace)", f"{seconds_rewrite * 1000:.0f} ms"),
        ("latest per device, before compaction: history scan", f"{before['latest_from_history'] * 1000:.0f} ms"),
        ("latest per device, before compaction: current state", f"{before['latest'] * 1000:.0f} ms"),
        (f"history of one device (last {HISTORY_ROWS}), before", f"{before['history'] * 1000:.0f} ms"),
        ("compaction: time", f"{compact_seconds:.1f} s"),
        ("compaction: data files before -> after", f"{files_before:,} -> {report['files_after']:,}"),
        (
            "compaction: partitions rewritten, snapshots expired",
            f"{report['partitions_compacted']:,}, {report['snapshots_expired']:,}",
        ),
        ("latest per device, after compaction: history scan", f"{after['latest_from_history'] * 1000:.0f} ms"),
        ("latest per device, after compaction: current state", f"{after['latest'] * 1000:.0f} ms"),
        (f"history of one device (last {HISTORY_ROWS}), after", f"{after['history'] * 1000:.0f} ms"),
        (f"hourly cycle write() of {n} rows, after compaction", ms(after_cycles)),
        ("   rows/s through write(), after", f"{n / statistics.median(after_cycles):,.0f} rows/s"),
        ("rows in table at the end", f"{rows:,}"),
    ]
    print()
    print(f"{'measure':54s} {'value':>34s}")
    print("-" * 89)
    for label, value in table_rows:
        print(f"{label:54s} {value:>34s}")
    if args.root is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
