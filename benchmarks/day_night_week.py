"""A simulated week of hourly checks through calmon's Dagster job, day and night.

A few simulated cameras (real panoramas) at a site (latitude/longitude below; the simulator's sun sets each
camera's light from its clock: day colour, dusk, infrared night), each with a hidden offset. Their
reference scans are collected at local noon; optionally (--night-entry) a night bank entry is
collected at midnight too. Then every hour of the last --days days is checked as the schedule
would: each camera's clock is set to that hour, and Platform.run_check_cycle runs the partition
(query_capture + calibration_offsets, rows in the results table). The bank grows from confident
dusk and night checks on its own ([check] grow_bank).

Prints, per hour of the day (UTC) over all days: the regime the checks saw, the conclusive share,
the median and p95 of the largest per-axis |error| against the hidden offset, the bank entries
used and how often the bank grew; then per day the night's conclusive share (does growth help?).

    .venv/bin/python benchmarks/day_night_week.py [--days 7] [--devices 3] [--night-entry]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
import warnings
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore")  # Dagster's preview/beta notices about calmon's own definitions

from benchmarks._sim_site import BenchSite  # noqa: E402
from calmon_sim.fleet_spec import small_camera  # noqa: E402

AXES = ("yaw", "pitch", "roll")
LATITUDE, LONGITUDE = 48.85, 2.35  # Paris: in December, night from ~16:00 to ~08:00 UTC
OFFSETS = [(0.31, -0.12, 0.05), (-0.64, 0.2, -0.03), (0.12, 0.41, 0.08), (0.05, -0.07, 0.02)]
CONFIDENT_WRONG_DEG = 0.2
# real photographs (../shared/data/scenes or CALMON_SCENES_DIR), 4096 px panoramas: the simulator
# relights a camera's whole scene for every change of light, which at 8192 px takes 25 s and 4 GB
SCENES = ("pannellum_examplepano.jpg", "aframe_puydesancy.jpg")
LIGHTING_NOTE = re.compile(r"lighting: (\w+), bank entry ([\w.-]+|none)")


def spec(devices: int) -> dict:
    cameras = [
        small_camera(
            f"cam-{i}",
            0,
            scene=SCENES[i % len(SCENES)],
            yaw=-10.0 + 10.0 * i,
            offset=OFFSETS[i % len(OFFSETS)],
            lighting={"latitude": LATITUDE, "longitude": LONGITUDE},
        )
        for i in range(devices)
    ]
    return {"deployments": [{"name": "week", "devices": cameras}]}


def at(site: BenchSite, when: datetime) -> None:
    for device_id in site.device_ids:
        site.fleet.set_lighting(device_id, {"time": when.isoformat()})


def p95(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--night-entry", action="store_true", help="collect a night bank entry before the week")
    parser.add_argument("--stabilize-time", type=float, default=1.0)
    parser.add_argument("--verbose", action="store_true", help="print every check")
    args = parser.parse_args()

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [now - timedelta(hours=h) for h in range(int(args.days * 24), 0, -1)]
    truth = {f"cam-{i}": OFFSETS[i % len(OFFSETS)] for i in range(args.devices)}
    started = time.monotonic()
    with BenchSite(0, 1, 0, args.stabilize_time, 60, spec=spec(args.devices)) as site:
        noon = hours[0].replace(hour=12)
        at(site, noon)
        runs = site.collect_references()
        assert all(r.succeeded for r in runs), [r.error for r in runs if not r.succeeded]
        if args.night_entry:
            at(site, noon.replace(hour=0))
            runs = site.platform.collect_references(regime="night")
            assert all(r.succeeded for r in runs), [r.error for r in runs if not r.succeeded]
        print(f"references in {time.monotonic() - started:.0f} s; {len(hours)} hourly cycles of {args.devices} devices")
        table = site.platform.resources["results_table"].get_client()
        rows = []
        for n, hour in enumerate(hours, 1):
            at(site, hour)
            key = hour.strftime("%Y-%m-%d-%H:00")
            site.platform.run_check_cycle(key)
            for device_id, offset in truth.items():
                row = table.read(device_id, key)
                notes = (row.failure_log or "") if row else ""
                lighting = LIGHTING_NOTE.search(notes)
                error = z = None
                if row is not None and row.success:
                    errs = [abs(getattr(row, f"{a}_offset") - o) for a, o in zip(AXES, offset, strict=True)]
                    error = max(errs)
                    z = max(
                        e / max(getattr(row, f"{a}_uncertainty") or 1e-9, 1e-9) for a, e in zip(AXES, errs, strict=True)
                    )
                rows.append(
                    {
                        "hour": hour,
                        "device": device_id,
                        "status": row.status.value if row else "missing",
                        "error": error,
                        "z": z,
                        "regime": lighting.group(1) if lighting else "day",
                        "entry": lighting.group(2) if lighting else "reference",
                        "grew": "grew by" in notes,
                    }
                )
                if args.verbose:
                    r = rows[-1]
                    print(
                        f"  {key} {device_id} {r['status']:<12} {r['regime']:<5} {r['entry']:<9} "
                        f"err {r['error'] if r['error'] is None else round(r['error'], 4)} | {notes[:150]}"
                    )
            if n % 12 == 0:
                print(f"  {n}/{len(hours)} cycles, {time.monotonic() - started:.0f} s", flush=True)

    print(
        f"\nsimulated {args.days:g} days x {args.devices} devices at ({LATITUDE}, {LONGITUDE}), "
        f"night entry {'collected' if args.night_entry else 'none (grown only)'}, "
        f"{time.monotonic() - started:.0f} s wall"
    )
    head = (
        f"{'UTC hour':>8} {'checks':>6} {'regimes':<22} {'conclusive':>10} {'median err':>10} {'p95 err':>8} "
        f"{'|e|/s p95':>9} {'conf-wrong':>10} {'entries used':<28} {'grew':>4}"
    )
    print(head)
    print("-" * len(head))
    by_hour = defaultdict(list)
    for r in rows:
        by_hour[r["hour"].hour].append(r)
    for hour in sorted(by_hour):
        group = by_hour[hour]
        errors = [r["error"] for r in group if r["error"] is not None]
        regimes = ",".join(f"{k}:{v}" for k, v in sorted(Counter(r["regime"] for r in group).items()))
        entries = ",".join(
            f"{k}:{v}" for k, v in sorted(Counter(r["entry"] for r in group if r["error"] is not None).items())
        )
        wrong = sum(e > CONFIDENT_WRONG_DEG for e in errors)
        zs = [r["z"] for r in group if r["z"] is not None]
        print(
            f"{hour:>8} {len(group):>6} {regimes:<22} {100 * len(errors) / len(group):>9.0f}% "
            f"{statistics.median(errors) if errors else float('nan'):>10.4f} {p95(errors) if errors else float('nan'):>8.4f} "
            f"{p95(zs) if zs else float('nan'):>9.1f} {wrong:>10} {entries:<28} {sum(r['grew'] for r in group):>4}"
        )
    print("\nper day, checks in the dark (dusk and night)")
    by_day = defaultdict(list)
    for r in rows:
        if r["regime"] != "day":
            by_day[(r["hour"] - timedelta(hours=12)).date()].append(r)  # a night belongs to its evening
    print(f"{'evening of':>10} {'checks':>6} {'conclusive':>10} {'p95 err':>8} {'bank grew':>9}")
    for day in sorted(by_day):
        group = by_day[day]
        errors = [r["error"] for r in group if r["error"] is not None]
        print(
            f"{day.isoformat():>10} {len(group):>6} {100 * len(errors) / len(group):>9.0f}% "
            f"{p95(errors) if errors else float('nan'):>8.4f} {sum(r['grew'] for r in group):>9}"
        )
    errors = [r["error"] for r in rows if r["error"] is not None]
    dark = [r for r in rows if r["regime"] == "night"]
    dark_errors = [r["error"] for r in dark if r["error"] is not None]
    print(
        f"\nall: {len(rows)} checks, {100 * len(errors) / len(rows):.0f}% conclusive, p95 {p95(errors):.4f} deg; "
        f"night: {len(dark)} checks, {100 * len(dark_errors) / max(1, len(dark)):.0f}% conclusive"
        + (f", p95 {p95(dark_errors):.4f} deg" if dark_errors else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
