"""Chaos soak: many check cycles over a simulated fleet with seeded random camera faults and hidden
calibration changes, then a reconciliation of what calmon recorded against what had to happen.

    .venv/bin/python benchmarks/chaos_soak.py                            # 50 devices x 20 cycles = 1,000 checks
    .venv/bin/python benchmarks/chaos_soak.py --devices 4 --cycles 2     # a quick look

Each cycle, every device independently gets (seeded) one fault with probability --fault-rate, and a
new hidden offset (above or below the threshold) with probability --change-rate; then one check
cycle runs through Platform.run_check_cycle (what `calmon monitor` runs) and its Slack messages are
sent to the local receiver, as the slack_alerts sensor would; then the results table upkeep that
`calmon monitor` runs after each cycle (--no-maintenance skips it, to see what it saves).

What each fault must give:
  offline, never_settle, corrupt_jpeg        no usable capture: success = false (a ❌ row)
  garbage_mqtt, slow_seconds (1-3 s),        the junk is ignored / the answers come late but in
  frozen_telemetry (on a still camera)       time: success = true, ok/breach as the hidden truth
  offline_midway                             the camera drops out at a random moment of the
                                             check: either outcome, but still exactly one row
  (no fault)                                 success = true, ok/breach as the hidden truth

Reconciled from the results table (ResultsTable.all_rows), Dagster's event log (materializations
of calibration_offsets per partition) and the Slack receiver: missing and duplicated rows and
materializations, wrong success flags both ways, ok/breach against the hidden truth, and one
message per check with 🚨 (a breach alert) exactly on breaches. Exit status 1 when any count of the
reconciliation is not zero.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import sys
import threading
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._sim_site import THRESHOLD_DEG, BenchSite, random_offset  # noqa: E402
from calmon_assets.defs.partitions import current_time_key  # noqa: E402

MUST_FAIL = ("offline", "never_settle", "corrupt_jpeg")
MUST_SUCCEED = ("garbage_mqtt", "slow_seconds", "frozen_telemetry")
EITHER = ("offline_midway",)
FAULTS = MUST_FAIL + MUST_SUCCEED + EITHER
HEADLINE = re.compile(r"^(?P<emoji>\S+) \*(?P<deployment>[^*]+)\* / \*(?P<device>[^*]+)\*")
PARTITION = re.compile(r"\(partition (?P<partition>[^)]+)\)")


@dataclass
class Check:
    device_id: str
    partition: str
    fault: str | None
    truth: dict
    messages: list[str] = field(default_factory=list)

    @property
    def breach(self) -> bool:
        return any(abs(self.truth[a]) > THRESHOLD_DEG for a in ("yaw", "pitch", "roll"))

    @property
    def expected_success(self) -> bool | None:
        if self.fault in MUST_FAIL:
            return False
        if self.fault in EITHER:
            return None
        return True


def plan_cycle(rng: random.Random, devices: list[str], fault_rate: float, change_rate: float):
    faults: dict[str, str | None] = {}
    changes: dict[str, tuple[float, float, float]] = {}
    for device_id in devices:
        faults[device_id] = rng.choice(FAULTS) if rng.random() < fault_rate else None
        if rng.random() < change_rate:
            changes[device_id] = random_offset(rng, breach=rng.random() < 0.5)
    return faults, changes


def apply_faults(
    site: BenchSite, rng: random.Random, faults: dict[str, str | None], stabilize_time: float
) -> list[threading.Timer]:
    """Switch this cycle's faults on; offline_midway starts a timer that cuts the camera off later."""
    timers = []
    for device_id, fault in faults.items():
        site.fleet.camera(device_id, "clear_faults")
        if fault == "slow_seconds":
            site.fleet.camera(device_id, "set_faults", slow_seconds=round(rng.uniform(1.0, 3.0), 1))
        elif fault == "offline_midway":
            timer = threading.Timer(
                rng.uniform(0.0, stabilize_time + 2.0),
                site.fleet.camera,
                args=(device_id, "set_faults"),
                kwargs={"offline": True},
            )
            timer.daemon = True
            timers.append(timer)
        elif fault is not None:
            site.fleet.camera(device_id, "set_faults", **{fault: True})
    for timer in timers:
        timer.start()
    return timers


def reconcile(site: BenchSite, checks: list[Check]) -> tuple[list[tuple[str, int]], dict[str, Counter]]:
    import dagster as dg

    platform = site.platform
    table = platform.resources["results_table"].get_client()
    rows_by_check: dict[tuple[str, str], list] = defaultdict(list)
    for row in table.all_rows():
        rows_by_check[(row.device_id, row.check_partition)].append(row)
    materializations: Counter[tuple[str, str]] = Counter()
    cursor = None
    while True:
        page = platform.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("calibration_offsets")), limit=1000, cursor=cursor
        )
        for record in page.records:
            partition = record.asset_materialization.partition if record.asset_materialization else None
            if partition and "|" in partition:
                device_id, time_key = partition.split("|", 1)
                materializations[(device_id, time_key)] += 1
        if not page.has_more:
            break
        cursor = page.cursor

    counts = Counter()
    by_fault: dict[str, Counter] = defaultdict(Counter)
    expected_keys = {(c.device_id, c.partition) for c in checks}
    counts["rows not belonging to any check"] = sum(len(v) for k, v in rows_by_check.items() if k not in expected_keys)
    for check in checks:
        rows = rows_by_check.get((check.device_id, check.partition), [])
        fault = check.fault or "(none)"
        by_fault[fault]["checks"] += 1
        counts["missing rows"] += not rows
        counts["duplicated rows"] += max(0, len(rows) - 1)
        made = materializations.get((check.device_id, check.partition), 0)
        counts["missing materializations"] += made == 0
        counts["duplicated materializations"] += max(0, made - 1)
        breach_alerts = sum(1 for m in check.messages if m.startswith("🚨"))
        counts["checks without a Slack message"] += not check.messages
        counts["checks with more than one message"] += len(check.messages) > 1
        if not rows:
            continue
        row = rows[-1]
        by_fault[fault][row.status.value] += 1
        expected = check.expected_success
        if expected is False and row.success:
            counts["success=true where the camera could not deliver"] += 1
        if expected is True and not row.success:
            counts["success=false on a camera that could deliver"] += 1
        if row.success and (row.status.value == "breach") != check.breach:
            counts["ok/breach contradicting the hidden truth"] += 1
        if row.status.value == "breach" and breach_alerts == 0:
            counts["breach rows without a breach alert"] += 1
        if row.status.value != "breach" and breach_alerts:
            counts["breach alerts without a breach row"] += 1
    order = [
        "missing rows",
        "duplicated rows",
        "rows not belonging to any check",
        "missing materializations",
        "duplicated materializations",
        "success=true where the camera could not deliver",
        "success=false on a camera that could deliver",
        "ok/breach contradicting the hidden truth",
        "checks without a Slack message",
        "checks with more than one message",
        "breach rows without a breach alert",
        "breach alerts without a breach row",
    ]
    return [(name, counts[name]) for name in order], by_fault


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stabilize-time", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, help="capture timeout (default stabilize_time x 3 + 10 s)")
    parser.add_argument("--fault-rate", type=float, default=0.3, help="chance of a fault per device and cycle")
    parser.add_argument(
        "--change-rate", type=float, default=0.15, help="chance of a new hidden offset per device and cycle"
    )
    parser.add_argument("--deployments", type=int, default=3)
    parser.add_argument(
        "--per-deployment", type=int, default=64, help="[schedule] max_concurrent_per_deployment of the simulated site"
    )
    parser.add_argument("--root", type=Path, help="keep the site's state here (default: a temp dir, removed)")
    parser.add_argument(
        "--snapshot-retention-hours",
        type=float,
        default=0.03,
        help="[results] snapshot_retention_hours of the simulated site: the soak runs hourly cycles "
        "back to back, so the default 2 h (two real cycles) becomes about two of its cycles (108 s)",
    )
    parser.add_argument(
        "--no-maintenance",
        action="store_true",
        help="skip the results table upkeep `calmon monitor` runs after each cycle (to see what it saves)",
    )
    args = parser.parse_args()
    timeout = args.timeout or args.stabilize_time * 3 + 10

    warnings.filterwarnings("ignore", message=".*is currently in beta")
    logging.getLogger("pyiceberg").setLevel(logging.ERROR)  # commit retries are expected, and counted by the table
    rng = random.Random(args.seed)
    total = args.devices * args.cycles
    print(
        f"chaos soak: {args.devices} devices x {args.cycles} cycles = {total} checks, seed {args.seed}, "
        f"stabilize_time {args.stabilize_time:g} s, capture timeout {timeout:g} s, fault rate {args.fault_rate:g}, "
        f"hidden-offset change rate {args.change_rate:g}; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    started = time.monotonic()
    checks: list[Check] = []
    stray: list[str] = []  # messages naming no check of the cycle they came in
    cycle_walls: list[float] = []
    with BenchSite(
        args.devices,
        args.deployments,
        args.seed,
        stabilize_time=args.stabilize_time,
        timeout=timeout,
        per_deployment=args.per_deployment,
        root=args.root,
        console_log_level="ERROR",
        snapshot_retention_hours=args.snapshot_retention_hours,
    ) as site:  # expected capture failures are counted, not printed
        refs = site.collect_references()
        failed_refs = [r.device_id for r in refs if not r.succeeded]
        print(
            f"reference scans: {len(refs)} in {time.monotonic() - started:.0f} s, failed: {failed_refs or 'none'}",
            flush=True,
        )
        devices = site.device_ids
        now = datetime.now(UTC)
        for number in range(args.cycles):
            time_key = current_time_key(now - timedelta(hours=args.cycles - number))
            faults, changes = plan_cycle(rng, devices, args.fault_rate, args.change_rate)
            for device_id, offset in changes.items():
                site.fleet.camera(device_id, "set_true_offset", yaw=offset[0], pitch=offset[1], roll=offset[2])
            truths = site.fleet.truths()
            timers = apply_faults(site, rng, faults, args.stabilize_time)
            cycle_started = time.monotonic()
            try:
                runs = site.platform.run_check_cycle(time_key)
            finally:
                for timer in timers:
                    timer.cancel()
                for device_id, fault in faults.items():
                    if fault:
                        site.fleet.camera(device_id, "clear_faults")
            cycle_walls.append(time.monotonic() - cycle_started)
            received_before = len(site.slack.messages)
            site.platform.send_alerts()
            upkeep = (
                ""
                if args.no_maintenance
                else f", table upkeep {site.platform.maintain_results_table()['seconds']:.1f} s"
            )
            cycle_checks = {d: Check(d, time_key, faults[d], truths[d]["true_offset"]) for d in devices}
            for message in site.slack.messages[received_before:]:
                text = message.get("text", "")
                head, partition = HEADLINE.match(text), PARTITION.search(text)
                if head and partition and partition["partition"] == time_key and head["device"] in cycle_checks:
                    cycle_checks[head["device"]].messages.append(text)
                else:  # a message for no check of this cycle: kept aside, counted below
                    stray.append(text)
            checks.extend(cycle_checks.values())
            failed_runs = sum(1 for r in runs if not r.succeeded)
            print(
                f"  cycle {number + 1}/{args.cycles} {time_key}: {cycle_walls[-1]:.0f} s, "
                f"faults {dict(Counter(f for f in faults.values() if f))}, {len(changes)} offset changes, "
                f"{failed_runs} failed runs, {len(site.slack.messages) - received_before} Slack messages{upkeep}",
                flush=True,
            )
        lines, by_fault = reconcile(site, checks)
    wall = time.monotonic() - started

    print(f"\nreconciliation of {len(checks)} checks ({args.devices} devices x {args.cycles} cycles)")
    print(f"{'what':<52} {'count':>7}")
    print("-" * 60)
    for name, count in [*lines, ("Slack messages for no check of their cycle", len(stray))]:
        print(f"{name:<52} {count:>7}")

    statuses = ("ok", "breach", "inconclusive", "failed")
    print("\noutcome by injected fault")
    head = f"{'fault':<18} {'expected':<10} {'checks':>6} " + " ".join(f"{s:>12}" for s in statuses)
    print(head)
    print("-" * len(head))
    for fault in ("(none)", *FAULTS):
        counter = by_fault.get(fault)
        if not counter:
            continue
        expected = (
            "success" if fault == "(none)" or fault in MUST_SUCCEED else "failure" if fault in MUST_FAIL else "either"
        )
        print(f"{fault:<18} {expected:<10} {counter['checks']:>6} " + " ".join(f"{counter[s]:>12}" for s in statuses))
    first, last = cycle_walls[: max(1, len(cycle_walls) // 4)], cycle_walls[-max(1, len(cycle_walls) // 4) :]
    print(
        f"\n{len(checks)} checks in {wall / 60:.1f} min ({sum(cycle_walls) / len(cycle_walls):.0f} s per cycle on "
        f"average, references included in the total; first quarter of the cycles {sum(first) / len(first):.0f} s, "
        f"last quarter {sum(last) / len(last):.0f} s; results table upkeep after each cycle: "
        f"{'no' if args.no_maintenance else 'yes'}); load average at the end "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    return 0 if not stray and all(count == 0 for _, count in lines) else 1


if __name__ == "__main__":
    raise SystemExit(main())
