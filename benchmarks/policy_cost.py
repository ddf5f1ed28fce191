"""CPU per check of the alert policy over a device's recent rows: what the slack_alerts sensor
(state_change) pays per new result, and what the check asset pays for its forecast columns.

    .venv/bin/python benchmarks/policy_cost.py                    # this tree
    .venv/bin/python benchmarks/policy_cost.py --tree ../old      # another tree, same fleet

The fleet is benchmarks/alert_replay.py's (healthy, outliers, steps, ramps, drifts, at and near
the threshold, failing, flapping network; dark nights and fog), hourly for --days days. For each
device kind, every --every hours past the first FORECAST_HISTORY_ROWS checks, the check is decided
as the two callers decide it, on the device's FORECAST_HISTORY_ROWS rows before it (what
ResultsTable.history returns them):

  - alert_for_check: the message, if any, the slack_alerts sensor sends for it;
  - forecast_columns: the row's trend and forecast columns, written by calibration_offsets.

CPU ms per check (median and p95 over the checks timed), and the messages sent, which must be
the same on two trees whose policy is meant to be the same.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
parser.add_argument("--devices", type=int, default=40)
parser.add_argument("--days", type=float, default=16)
parser.add_argument("--every", type=int, default=12, help="time one check in this many hours")
parser.add_argument("--seed", type=int, default=16)
args = parser.parse_args()
sys.path.insert(0, str(args.tree.resolve()))
sys.path.insert(0, str(args.tree.resolve() / "benchmarks"))

import numpy as np  # noqa: E402
from alert_replay import build_fleet, histories  # noqa: E402

from calmon_assets.defs.checks.assets import FORECAST_HISTORY_ROWS  # noqa: E402
from calmon_core.alert_policy import AlertPolicySettings, alert_for_check, forecast_columns  # noqa: E402


def cpu_ms(fn, *args) -> tuple[float, object]:
    start = time.process_time()
    out = fn(*args)
    return (time.process_time() - start) * 1000, out


def main() -> None:
    rng = np.random.default_rng(args.seed)
    fleet = build_fleet(args.devices, args.days, rng)
    checks = histories(fleet, args.days, args.seed)
    policy = AlertPolicySettings(policy="state_change")
    alert_ms: dict[str, list[float]] = defaultdict(list)
    column_ms: dict[str, list[float]] = defaultdict(list)
    sent: dict[str, int] = defaultdict(int)
    for device in fleet:
        rows = checks[device.device_id]
        for i in range(FORECAST_HISTORY_ROWS, len(rows), args.every):
            before = rows[i - FORECAST_HISTORY_ROWS : i]
            ms, alert = cpu_ms(alert_for_check, rows[i], before, policy)
            alert_ms[device.kind].append(ms)
            sent[device.kind] += alert is not None
            ms, _ = cpu_ms(forecast_columns, rows[i], before, policy)
            column_ms[device.kind].append(ms)

    def p95(values: list[float]) -> float:
        return float(np.percentile(values, 95))

    print(
        f"# benchmarks/policy_cost.py --tree {args.tree} --devices {args.devices} --days {args.days:g} "
        f"--every {args.every}: {FORECAST_HISTORY_ROWS} rows before each check"
    )
    print(
        f"{'kind':14} {'checks':>6} {'alert median':>12} {'alert p95':>9} {'columns median':>14} {'columns p95':>11} {'sent':>5}"
    )
    every = []
    for kind in sorted(alert_ms):
        a, c = alert_ms[kind], column_ms[kind]
        every += a
        print(
            f"{kind:14} {len(a):6d} {statistics.median(a):10.1f}ms {p95(a):7.1f}ms "
            f"{statistics.median(c):12.1f}ms {p95(c):9.1f}ms {sent[kind]:5d}"
        )
    columns = [v for values in column_ms.values() for v in values]
    print(
        f"{'all':14} {len(every):6d} {statistics.median(every):10.1f}ms {p95(every):7.1f}ms "
        f"{statistics.median(columns):12.1f}ms {p95(columns):9.1f}ms {sum(sent.values()):5d}"
    )


if __name__ == "__main__":
    main()
