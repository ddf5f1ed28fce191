"""The slack_alerts tick right after an hourly cycle: SLACK_BACKLOG new calibration_offsets results
(the sensor's fetch limit), decided against a results table that holds the fleet's recent history.

    .venv/bin/python benchmarks/alert_tick.py                      # 200 devices, 30 days of rows
    .venv/bin/python benchmarks/alert_tick.py --devices 1000 --days 60

A real SQLite Dagster instance gets one run and one calibration_offsets materialization per
(device, hour) for the last --dagster-hours hours (the metadata calibration_offsets writes, images
included, as benchmarks/dagster_scale.py makes them); the results table (SQLite catalog, local
warehouse) gets the rows of the same checks for --days days, compacted as the daily upkeep leaves
it. Slack is a local HTTP server that answers 200. Timed, per alert policy (every_check: one
message per result; state_change: the default), with the cursor SLACK_BACKLOG results back:

  - tick: the whole of calmon_assets.defs.alerts.sensors.alerts_for_new_results, messages sent;
  - Dagster part: the same tick against an empty results table (every row missing, so only the
    instance's reads remain, and each result's one row lookup).

Each is the median of --repeats runs. Run it on two trees to compare them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dagster_scale import SLACK_BACKLOG, History, result_metadata_template  # noqa: E402
from results_table import history_batch  # noqa: E402


class SlackServer:
    """A webhook endpoint that accepts every message (and counts them)."""

    def __init__(self) -> None:
        self.received = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.received += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/hook"

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def results_table(root: Path, name: str):
    from calmon_core.config import ResultsSettings
    from resources.results_table import ResultsTable

    return ResultsTable(
        ResultsSettings(warehouse=str(root / f"{name}-warehouse"), sqlite_path=str(root / f"{name}.db"))
    )


def load_rows(table, devices: int, days: int, last_hour: datetime) -> int:
    """`days` of hourly rows for every device, the newest at `last_hour`, loaded a day per commit."""
    hours = days * 24
    start = last_hour - timedelta(hours=hours - 1)
    rng = np.random.default_rng(0)
    table.ensure_table()
    for first in range(0, hours, 24):
        table.table().append(history_batch(devices, 10, start, first, min(24, hours - first), rng))
    table.compact()
    return devices * hours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=200, help="devices in the fleet (one result each per hour)")
    parser.add_argument("--days", type=int, default=30, help="days of rows in the results table")
    parser.add_argument("--dagster-hours", type=int, default=3, help="hours of results in the Dagster instance")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import dagster as dg

    from calmon_assets.defs.alerts.sensors import OFFSETS, alerts_for_new_results
    from calmon_core.alert_policy import AlertPolicySettings
    from calmon_core.alerts import AlertPolicy
    from resources.slack import SlackNotifier

    last_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    slack_server = SlackServer()
    slack = SlackNotifier(slack_server.url, echo=None, max_attempts=1)
    with tempfile.TemporaryDirectory(prefix="calmon-alert-tick-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        (root / "dagster").mkdir()
        instance = dg.DagsterInstance.local_temp(str(root / "dagster"))
        history = History(instance, args.devices, last_hour, result_metadata_template())
        history.grow(args.devices * args.dagster_hours)
        full = results_table(root, "full")
        rows = load_rows(full, args.devices, args.days, last_hour)
        empty = results_table(root, "empty")
        empty.ensure_table()
        print(
            f"# {args.devices} devices; {rows:,} rows in the results table ({args.days} days); "
            f"{history.size:,} results in the instance; set up in {time.perf_counter() - started:.0f} s"
        )
        newest = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=OFFSETS), limit=SLACK_BACKLOG + 1, ascending=False
        ).records
        cursor = newest[-1].storage_id

        policies = {
            "every_check": AlertPolicy(settings=AlertPolicySettings(policy="every_check")),
            "state_change": AlertPolicy(settings=AlertPolicySettings(policy="state_change")),
        }
        print(f"{'policy':<14}{'tick (s)':>10}{'Dagster part (s)':>18}{'messages':>10}{'CPU (s)':>9}")
        for name, policy in policies.items():
            ticks, parts, cpus, messages = [], [], [], 0
            for _ in range(args.repeats):
                cpu = time.process_time()
                begun = time.perf_counter()
                _, sent = alerts_for_new_results(instance, cursor, full, slack, policy)
                ticks.append(time.perf_counter() - begun)
                cpus.append(time.process_time() - cpu)
                messages = len(sent)
                begun = time.perf_counter()
                alerts_for_new_results(instance, cursor, empty, slack, policy)
                parts.append(time.perf_counter() - begun)
            print(
                f"{name:<14}{statistics.median(ticks):>10.2f}{statistics.median(parts):>18.2f}"
                f"{messages:>10}{statistics.median(cpus):>9.2f}"
            )
        instance.dispose()
    slack_server.close()


if __name__ == "__main__":
    main()
