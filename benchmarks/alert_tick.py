"""The slack_alerts sensor right after one hourly cycle of the fleet, checks partitioned by
deployment x hour: 10 new calibration_offsets materializations (one per deployment) carrying every
device's result, decided against a results table that holds the fleet's recent history.

    .venv/bin/python benchmarks/alert_tick.py                      # 200 devices, 7 days of rows
    .venv/bin/python benchmarks/alert_tick.py --devices 1000 --days 7

A real SQLite Dagster instance gets, as benchmarks/dagster_scale.py's History writes them (the
metadata calibration_offsets writes, the worst device's preview pictures included), one run and one
materialization per deployment-hour for the --dagster-hours hours before the cycle, then the cycle
itself: one per deployment of the --devices devices (spread over the 10 deployments), all devices
checked, none failed. The results table (SQLite catalog, local warehouse) holds --days days of rows
of every device: the hours before the cycle generated in bulk and compacted as the daily upkeep
leaves them, then the cycle's own rows (the statuses its materializations carry) written by
ResultsTable.write, one commit as a cycle makes it. Slack is a local HTTP server that answers 200.

Timed, per alert policy (every_check: one message per result; state_change: the default), from
the cursor just before the cycle:

  - tick: one call of calmon_assets.defs.alerts.sensors.alerts_for_new_results with its default
    max_results (MAX_RESULTS_PER_TICK): what one 30 s tick of the sensor does. Seconds, CPU
    seconds, results decided (how far the cursor moved), messages sent; median of --repeats;
  - Dagster part: that tick against an empty results table (every row missing, so only the
    instance's reads remain, and the table's one batched row lookup); median of --repeats;
  - cycle: calls from the same cursor until it reaches the cycle's newest result (what `calmon
    monitor`'s send_alerts loops over; the sensor makes one call per tick, so the cycle's last
    result is alerted calls - 1 ticks after its first): calls, total and slowest call's seconds,
    results and messages. Once (after the tick's calls, so nothing one-off is in it).

Run it on two trees to compare them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dagster_scale import DEPLOYMENTS, History, SlackServer, result_metadata_template  # noqa: E402
from results_table import history_batch  # noqa: E402


def results_table(root: Path, name: str):
    from calmon_core.config import ResultsSettings
    from resources.results_table import ResultsTable

    return ResultsTable(
        ResultsSettings(warehouse=str(root / f"{name}-warehouse"), sqlite_path=str(root / f"{name}.db"))
    )


def load_rows(table, devices: int, hours: int, last_hour: datetime) -> int:
    """`hours` of hourly rows for every device, the newest at `last_hour`, loaded a day per commit,
    then compacted."""
    start = last_hour - timedelta(hours=hours - 1)
    rng = np.random.default_rng(0)
    table.ensure_table()
    for first in range(0, hours, 24):
        table.table().append(history_batch(devices, DEPLOYMENTS, start, first, min(24, hours - first), rng))
    table.compact()
    return devices * hours


def cycle(history: History, hour: datetime) -> list:
    """The hourly cycle: every deployment's run and materialization of `hour`, all its devices
    checked; returns their results table rows."""
    rows = []
    for deployment, device_ids in history.members.items():
        if device_ids:
            rows += history.report(deployment, hour, device_ids)
    return rows


class Progress:
    """Where a cursor stands in the cycle's results: how many of them it has passed."""

    def __init__(self, instance, after: int) -> None:
        import dagster as dg

        from calmon_assets.defs.alerts.sensors import OFFSETS, result_entries

        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=OFFSETS, after_storage_id=after), limit=1000, ascending=True
        ).records
        self.entries = [
            (r.storage_id, device) for r in records for device, _, _ in result_entries(r.asset_materialization)
        ]
        self.newest = str(records[-1].storage_id)

    def passed(self, cursor: str) -> int:
        from calmon_assets.defs.alerts.sensors import AlertCursor

        position = AlertCursor.parse(cursor)
        part_way = min((sid for sid, _ in self.entries if sid > position.through), default=None)
        return sum(
            1
            for sid, device in self.entries
            if sid <= position.through or (position.device and sid == part_way and device <= position.device)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=200, help="devices in the fleet (one result each per hour)")
    parser.add_argument("--days", type=int, default=7, help="days of rows of every device in the results table")
    parser.add_argument(
        "--dagster-hours", type=int, default=3, help="hours of results in the Dagster instance before the cycle"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of the tick (and its Dagster part) per policy")
    args = parser.parse_args()

    import dagster as dg

    from calmon_assets.defs.alerts.sensors import MAX_RESULTS_PER_TICK, OFFSETS, alerts_for_new_results
    from calmon_core.alert_policy import AlertPolicySettings
    from calmon_core.alerts import AlertPolicy
    from resources.slack import SlackNotifier

    cycle_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    slack_server = SlackServer()
    slack = SlackNotifier(slack_server.url, echo=None, max_attempts=1)
    print(f"# load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="calmon-alert-tick-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        (root / "dagster").mkdir()
        instance = dg.DagsterInstance.local_temp(str(root / "dagster"))
        history = History(instance, args.devices, cycle_hour - timedelta(hours=1), result_metadata_template())
        history.grow(args.devices * args.dagster_hours)
        before = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=OFFSETS), limit=1, ascending=False)
        cursor = str(before.records[0].storage_id)
        earlier = history.size
        full = results_table(root, "full")
        rows = load_rows(full, args.devices, args.days * 24 - 1, cycle_hour - timedelta(hours=1))
        new_rows = cycle(history, cycle_hour)
        full.write(new_rows)
        rows += len(new_rows)
        empty = results_table(root, "empty")
        empty.ensure_table()
        progress = Progress(instance, int(cursor))
        if len(progress.entries) != args.devices:
            raise RuntimeError(f"the cycle holds {len(progress.entries)} results, expected {args.devices}")
        print(
            f"# {args.devices} devices in {DEPLOYMENTS} deployments; {rows:,} rows in the results table "
            f"({args.days} days, the cycle's hour the last); {earlier:,} results in the instance before the "
            f"cycle, {args.devices:,} in its {DEPLOYMENTS} materializations; max_results {MAX_RESULTS_PER_TICK}; "
            f"set up in {time.perf_counter() - started:.0f} s",
            flush=True,
        )

        policies = {
            "every_check": AlertPolicy(settings=AlertPolicySettings(policy="every_check")),
            "state_change": AlertPolicy(settings=AlertPolicySettings(policy="state_change")),
        }
        ticks, cycles = {}, {}
        for name, policy in policies.items():
            seconds, cpus, parts, decided, messages = [], [], [], 0, 0
            for _ in range(args.repeats):
                cpu = time.process_time()
                begun = time.perf_counter()
                after, sent = alerts_for_new_results(instance, cursor, full, slack, policy)
                seconds.append(time.perf_counter() - begun)
                cpus.append(time.process_time() - cpu)
                decided, messages = progress.passed(after), len(sent)
                begun = time.perf_counter()
                alerts_for_new_results(instance, cursor, empty, slack, policy)
                parts.append(time.perf_counter() - begun)
            ticks[name] = (statistics.median(seconds), statistics.median(cpus), decided, messages)
            ticks[name] += (statistics.median(parts),)

            position, calls, total, slowest, cpu_total, sent_total = cursor, 0, 0.0, 0.0, 0.0, 0
            while position != progress.newest:
                cpu = time.process_time()
                begun = time.perf_counter()
                after, sent = alerts_for_new_results(instance, position, full, slack, policy)
                took = time.perf_counter() - begun
                cpu_total += time.process_time() - cpu
                calls, total, slowest, sent_total = calls + 1, total + took, max(slowest, took), sent_total + len(sent)
                if after == position:
                    raise RuntimeError(f"{name}: the cursor stayed at {position}, short of {progress.newest}")
                position = after
            cycles[name] = (calls, total, slowest, cpu_total, progress.passed(position), sent_total)
            print(f"#   {name} done", flush=True)

        print(f"\none tick: one call from the cursor before the cycle (median of {args.repeats})")
        print(f"{'policy':<14}{'tick (s)':>10}{'CPU (s)':>9}{'results':>9}{'messages':>10}{'Dagster part (s)':>18}")
        for name, (tick, cpu, decided, messages, part) in ticks.items():
            print(f"{name:<14}{tick:>10.2f}{cpu:>9.2f}{decided:>9}{messages:>10}{part:>18.2f}")
        print("\nthe whole cycle: calls until the cursor reaches its newest result (once)")
        print(
            f"{'policy':<14}{'calls':>7}{'total (s)':>11}{'slowest call (s)':>18}{'CPU (s)':>9}"
            f"{'results':>9}{'messages':>10}"
        )
        for name, (calls, total, slowest, cpu, decided, messages) in cycles.items():
            print(f"{name:<14}{calls:>7}{total:>11.2f}{slowest:>18.2f}{cpu:>9.2f}{decided:>9}{messages:>10}")
        instance.dispose()
    slack_server.close()
    print(f"# load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
