"""Dagster at fleet scale: what the partitions page, the sensors and the schedule cost as the event
log grows, fitted and extrapolated to 1,000 devices x 1 year of hourly checks: checks partitioned by
deployment x hour, 10 deployments, so 87,600 partitions per asset a year holding 8.76 M device
results.

    .venv/bin/python benchmarks/dagster_scale.py                         # SQLite, 5k/20k/60k results
    .venv/bin/python benchmarks/dagster_scale.py --storage sqlite,postgres --sizes 2000,8000,20000

For each instance storage (calmon's dagster.yaml; SQLite as `calmon dev` has it, Postgres as the Helm
chart has it) the history is grown step by step to each size, counted in device results (checks) and
in partitions. The `--devices` devices carrying it are spread over the 10 deployments site-00..09
(device i in site-(i mod 10)); every deployment-hour of the history is

  - a run of calibration_check_job in the run storage (deployment and partition tags, as the
    schedule's runs have them; 2 % of them failed, with Dagster's run-failure event), and
  - a calibration_offsets materialization of its (deployment, hour) partition carrying the metadata
    calibration_offsets writes (calmon_assets.defs.checks.asset_checks.deployment_metadata: worst
    status, the devices table, the per-device `checks` JSON, the worst device's preview pictures),
    or for a failed run the one record_failed_run reports (every device failed), reported through
    instance.report_runless_asset_event with the run's id in its metadata, as record_failed_run
    reports it. (Runless: on SQLite a run's own events go to one database file per run, which would
    make the synthetic history cost one file per partition.) Not written: query_capture's
    materializations and the asset-check evaluations a real run adds beside it.

devices.yaml lists `--fleet` devices (1,000) in the same 10 deployments, all registered as device and
deployment partitions (calmon_assets.defs.devices.sync.sync_devices, as the sync_devices sensor does).
Timed at each size, on the real code location (calmon_assets.definitions in its own gRPC code
server, as the daemon and the webserver load it):

  - partitions page: the GraphQL PartitionHealthQuery the UI's asset partitions page sends
    (dagster-ui usePartitionHealthData.tsx), cold (the asset status cache rebuilt, as after an
    upgrade or a cache reset) and warm (cached, one new deployment-hour since);
  - slack_alerts tick: one hourly cycle of the whole fleet is reported first (10 runs, 10
    materializations of 100 devices each, their 1,000 rows in the results table), then the sensor is
    evaluated with its cursor just before it: the tick decides 1,000 device results (Slack is a local
    endpoint answering 200); "dagster part" is its instance reads alone (the fetch and
    result_origins). The results table holds only these cycles' rows (benchmarks/alert_tick.py
    times the table side with months of rows);
  - record_failed_checks tick: the run-failure sensor with 5 new failed deployment runs since its
    cursor (each: its deployment's 100 devices get failed rows and one materialization);
  - schedule tick: the scheduler daemon's own loop (dagster._scheduler) launching the hourly tick for
    the fleet: evaluation, run-key checks, one run per deployment with enabled devices created and
    queued (10 for the fleet);
  - RSS of this process (the webserver's and the daemon's part) and of the code server.

Times are fitted as a + b*N over the sizes, N the partitions of calibration_offsets (one run and one
materialization each: what the event log, the run storage and the status cache grow with), and
extrapolated to N = 87,600; the instance's size on disk also grows with the device results inside
each materialization, so its extrapolation adds, per partition, the measured size difference between
a materialization of 100 devices and one of the history's. The table says which numbers are
extrapolated.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEPLOYMENTS = 10  # site-00..site-09
YEAR_RESULTS = 1000 * 24 * 365  # 1,000 devices checked hourly for a year: 8.76 M device results
YEAR_PARTITIONS = DEPLOYMENTS * 24 * 365  # ... in 87,600 deployment-hour partitions per asset
TARGETS = {"page": 5.0, "tick": 10.0, "rss_mib": 1024.0}
SLACK_BACKLOG = 200  # slack_alerts' fetch limit (materializations): the most one tick handles
NEW_FAILURES = 5
FAILED_SHARE = 0.02

PARTITION_HEALTH_QUERY = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
        ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey primaryDimStartTime primaryDimEndTime
            secondaryDim {
              ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
              ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
            }
          }
        }
      }
    }
  }
}
"""


def _picture_links(files: str) -> dict:
    """The links a check's materialization carries to its pictures, named as calmon stores them."""
    import dagster as dg

    return {
        "diagnostic_file": dg.MetadataValue.path(f"{files}diagnostics/000_000.jpg"),
        "trend_file": dg.MetadataValue.path(f"{files}diagnostics/trend.png"),
    }


def rss_mib(pid: str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def child_pids() -> list[str]:
    pid = os.getpid()
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


class SlackServer:
    """A local webhook endpoint that accepts every message (and counts them)."""

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


def deployment_of(device_index: int) -> str:
    return f"site-{device_index % DEPLOYMENTS:02d}"


def write_site(root: Path, fleet_devices: int, start_date: str, enabled_deployments: int) -> Path:
    from calmon_core.config import local_site_settings

    config = root / "config"
    config.mkdir(parents=True)
    ini = local_site_settings(
        root,
        webhook_env="CALMON_BENCH_WEBHOOK",
        written_by="benchmarks/dagster_scale.py",
        start_date=start_date,
        max_concurrent_per_deployment=4,
    )
    config.joinpath("calibration_monitoring.ini").write_text(ini)
    deployments = []
    for d in range(DEPLOYMENTS):
        devices = [
            {
                "id": f"cam-{i:04d}",
                "camera": {"base_url": f"http://127.0.0.1:9/{i}"},
                "intrinsics": {"width": 1920, "height": 1080, "hfov_by_zoom": {1.0: 60.0}},
                "reference_grid": {"yaws": [0, 40], "pitches": [0], "zoom": 1.0},
                "enabled": d < enabled_deployments,
            }
            for i in range(d, fleet_devices, DEPLOYMENTS)
        ]
        deployments.append(
            {
                "name": f"site-{d:02d}",
                "access": "direct",
                "mqtt": {"host": "127.0.0.1", "port": 9},
                "devices": devices,
            }
        )
    import yaml

    config.joinpath("devices.yaml").write_text(yaml.safe_dump({"deployments": deployments}, sort_keys=False))
    return config


def result_metadata_template(seed: int = 0) -> dict:
    """One device's metadata as calibration_offsets builds it before summing a deployment up
    (calmon_assets.defs.checks.asset_checks.result_metadata, pictures = "preview", the pictures also
    stored), with a real diagnostic picture (a scene photograph) and a real trend plot of 48 checks.
    History puts the previews of the worst device, and the other devices' file links, into each
    deployment's metadata."""
    import cv2
    import numpy as np

    from calmon_assets.defs.checks.asset_checks import result_metadata
    from calmon_assets.defs.checks.measure import Measurement
    from calmon_core.models import CalibrationResult, CheckStatus

    rng = np.random.default_rng(seed)
    scenes = Path(os.environ.get("CALMON_SCENES_DIR", ROOT.parent / "shared" / "data" / "scenes"))
    photo = next(iter(sorted(scenes.glob("*.jpg"))), None)
    image = cv2.imread(str(photo)) if photo else rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def row(hour: int) -> CalibrationResult:
        moment = start + timedelta(hours=hour)
        offsets = rng.normal(0, 0.1, 3)
        return CalibrationResult(
            deployment_name="site-00",
            device_id="cam-0000",
            timestamp=moment,
            check_partition=moment.strftime("%Y-%m-%d-%H:%M"),
            yaw_offset=float(offsets[0]),
            pitch_offset=float(offsets[1]),
            roll_offset=float(offsets[2]),
            yaw_uncertainty=0.01,
            pitch_uncertainty=0.01,
            roll_uncertainty=0.02,
            success=True,
            status=CheckStatus.ok,
            inliers=1200,
            algorithm_version="bench",
            files_location=f"file:///site/site-00/cam-0000/query_scan/{moment:%Y%m%dT%H%M%SZ}/",
        )

    history = [row(h) for h in range(47)]
    frames = [{"yaw": 10.0 * i, "pitch": 0.0, "inliers": 300, "residual_px": 0.8} for i in range(4)]
    measurement = Measurement(
        estimate={"frames": frames},
        reference_age_days=3.0,
        diagnostic_picture=cv2.imencode(".jpg", image)[1].tobytes(),
        diagnostic_uri="file:///site/site-00/cam-0000/query_scan/20260102T230000Z/diagnostics/diagnostic.jpg",
    )
    return result_metadata(
        row(47),
        measurement,
        history,
        logging.getLogger("dagster_scale"),
        "preview",
        lambda data, name: f"file:///site/site-00/cam-0000/query_scan/20260102T230000Z/diagnostics/{name}",
    )


def device_status(rng: random.Random) -> str:
    """A device's status in a run that did not fail: mostly ok, a few inconclusive, a rare breach."""
    draw = rng.random()
    return "breach" if draw < 0.01 else "inconclusive" if draw < 0.05 else "ok"


class History:
    """Grows one instance's history to a size (device results); remembers what it wrote.

    Its `devices` devices are spread over the DEPLOYMENTS deployments; each step of the history is
    one deployment-hour (a run and its calibration_offsets materialization), laid out backwards from
    `last_hour`, so a bigger size reaches older hours."""

    def __init__(self, instance, devices: int, last_hour: datetime, metadata: dict):
        self.instance, self.devices, self.last_hour, self.metadata = instance, devices, last_hour, metadata
        self.size = 0  # device results reported
        self.partitions: set[str] = set()  # calibration_offsets partitions materialized
        self.steps = 0  # deployment-hours of the history laid out
        self.rng = random.Random(0)
        self.members = {
            f"site-{d:02d}": [f"cam-{i:04d}" for i in range(d, devices, DEPLOYMENTS)] for d in range(DEPLOYMENTS)
        }

    def grow(self, target: int) -> float:
        """Add deployment-hours until `target` device results are reported; returns seconds spent."""
        started = time.perf_counter()
        while self.size < target:
            deployment = f"site-{self.steps % DEPLOYMENTS:02d}"
            hour = self.last_hour - timedelta(hours=self.steps // DEPLOYMENTS)
            self.steps += 1
            if self.members[deployment]:
                self.report(deployment, hour, self.members[deployment], failed=self.rng.random() < FAILED_SHARE)
        return time.perf_counter() - started

    def report(self, deployment: str, hour: datetime, device_ids: list[str], failed: bool = False) -> list:
        """One run of a deployment-hour and the calibration_offsets materialization it ends with;
        returns the results table rows of its devices."""
        import dagster as dg
        from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
        from dagster._core.utils import make_new_run_id

        from calmon_assets.defs.checks.asset_checks import CHECKS_KEY, deployment_metadata
        from calmon_assets.defs.checks.failed_runs import FAILED_RUN_KEY
        from calmon_assets.defs.checks.jobs import calibration_check_job
        from calmon_assets.defs.checks.measure import Measurement
        from calmon_assets.defs.partitions import check_partition_key
        from calmon_assets.defs.runs import CHECK_STATUS_TAG, DEPLOYMENT_TAG
        from calmon_core.check import failed_check, worst_status
        from calmon_core.models import CalibrationResult, CheckStatus

        time_key = hour.strftime("%Y-%m-%d-%H:%M")
        key = check_partition_key(deployment, time_key)
        run_id = make_new_run_id()
        if failed:
            reason = f"check run {run_id[:8]} failed: query_capture: camera offline"
            rows = [
                failed_check(
                    deployment_name=deployment,
                    device_id=device_id,
                    check_partition=time_key,
                    reason=reason,
                    mode="passive",
                    run_id=run_id,
                )
                for device_id in device_ids
            ]
            metadata = {  # what record_failed_run reports
                "status": CheckStatus.failed.value,
                "success": False,
                "deployment": deployment,
                "failure_log": reason,
                CHECKS_KEY: dg.MetadataValue.json(
                    {
                        row.device_id: {"status": CheckStatus.failed.value, "failure_log": row.failure_log}
                        for row in rows
                    }
                ),
            }
        else:
            rows, per_device = [], {}
            for device_id in device_ids:
                status = CheckStatus(device_status(self.rng))
                measured = status is not CheckStatus.inconclusive
                offset = 0.8 if status is CheckStatus.breach else self.rng.gauss(0, 0.1)
                files = f"file:///site/{deployment}/{device_id}/query_scan/{hour:%Y%m%dT%H%M%SZ}/"
                row = CalibrationResult(
                    deployment_name=deployment,
                    device_id=device_id,
                    timestamp=hour + timedelta(minutes=5),
                    check_partition=time_key,
                    yaw_offset=offset if measured else None,
                    pitch_offset=self.rng.gauss(0, 0.1) if measured else None,
                    roll_offset=self.rng.gauss(0, 0.1) if measured else None,
                    yaw_uncertainty=0.01 if measured else None,
                    pitch_uncertainty=0.01 if measured else None,
                    roll_uncertainty=0.02 if measured else None,
                    success=measured,
                    status=status,
                    failure_log=None if measured else "too few inliers (31 < 50)",
                    inliers=1200 if measured else 31,
                    algorithm_version="bench",
                    files_location=files,
                    run_id=run_id,
                )
                links = _picture_links(files)
                per_device[device_id] = (row, Measurement(), {**self.metadata, **links})
                rows.append(row)
            metadata = deployment_metadata(per_device, "preview")
        worst = worst_status([row.status for row in rows])
        run = DagsterRun(
            job_name=calibration_check_job.name,
            run_id=run_id,
            status=DagsterRunStatus.STARTED if failed else DagsterRunStatus.SUCCESS,
            tags={
                DEPLOYMENT_TAG: deployment,
                "dagster/partition": str(key),
                "dagster/partition/deployment": deployment,
                "dagster/partition/time": time_key,
                **({} if failed or worst is None else {CHECK_STATUS_TAG: worst.value}),
            },
        )
        self.instance.add_run(run)
        if failed:
            self.instance.report_run_failed(run, "query_capture: camera offline")
        metadata[FAILED_RUN_KEY] = run.run_id
        self.instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="calibration_offsets", partition=str(key), metadata=metadata)
        )
        self.size += len(device_ids)
        self.partitions.add(str(key))
        return rows

    def fail_runs(self, hour: datetime, deployments: list[str]) -> list:
        """Runs of these deployments for `hour` that died (a run-failure event, nothing reported)."""
        from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
        from dagster._core.utils import make_new_run_id

        from calmon_assets.defs.checks.jobs import calibration_check_job
        from calmon_assets.defs.partitions import check_partition_key
        from calmon_assets.defs.runs import DEPLOYMENT_TAG

        time_key = hour.strftime("%Y-%m-%d-%H:%M")
        runs = []
        for deployment in deployments:
            run = DagsterRun(
                job_name=calibration_check_job.name,
                run_id=make_new_run_id(),
                status=DagsterRunStatus.STARTED,
                tags={
                    DEPLOYMENT_TAG: deployment,
                    "dagster/partition": str(check_partition_key(deployment, time_key)),
                    "dagster/partition/deployment": deployment,
                    "dagster/partition/time": time_key,
                },
            )
            self.instance.add_run(run)
            self.instance.report_run_failed(run, "query_capture: the run's pod was evicted")
            runs.append(run)
        return runs


def materialization_bytes(history: History, devices_per_deployment: int) -> int:
    """Serialized size of one calibration_offsets materialization of a deployment with this many
    devices, as History writes it (event log bytes per partition, before the database's overhead)."""
    import dagster as dg
    from dagster._serdes import serialize_value

    from calmon_assets.defs.checks.asset_checks import deployment_metadata
    from calmon_assets.defs.checks.measure import Measurement
    from calmon_core.models import CalibrationResult, CheckStatus

    per_device = {}
    for i in range(devices_per_deployment):
        device_id = f"cam-{i * DEPLOYMENTS:04d}"
        files = f"file:///site/site-00/{device_id}/query_scan/20260101T000000Z/"
        row = CalibrationResult(
            deployment_name="site-00",
            device_id=device_id,
            timestamp=datetime(2026, 1, 1, tzinfo=UTC),
            check_partition="2026-01-01-00:00",
            yaw_offset=0.012,
            pitch_offset=-0.034,
            roll_offset=0.056,
            yaw_uncertainty=0.01,
            pitch_uncertainty=0.01,
            roll_uncertainty=0.02,
            success=True,
            status=CheckStatus.ok,
            inliers=1200,
            files_location=files,
        )
        links = _picture_links(files)
        per_device[device_id] = (row, Measurement(), {**history.metadata, **links})
    metadata = deployment_metadata(per_device, "preview")
    event = dg.AssetMaterialization(
        asset_key="calibration_offsets", partition="site-00|2026-01-01-00:00", metadata=metadata
    )
    return len(serialize_value(event))


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - started, value


def partitions_page(request_context_factory, cold: bool, instance) -> tuple[float, int]:
    """Seconds for the UI's PartitionHealthQuery; the status cache's size in bytes afterwards."""
    import dagster as dg
    from dagster_graphql.test.utils import execute_dagster_graphql

    key = dg.AssetKey("calibration_offsets")
    if cold:
        instance.wipe_asset_cached_status([key])
    seconds, result = timed(
        execute_dagster_graphql, request_context_factory(), PARTITION_HEALTH_QUERY, {"assetKey": {"path": key.path}}
    )
    if result.errors:
        raise RuntimeError(f"PartitionHealthQuery failed: {result.errors}")
    node = result.data["assetNodeOrError"]
    if "assetPartitionStatuses" not in node:
        raise RuntimeError(f"PartitionHealthQuery found no asset node: {json.dumps(node)[:300]}")
    record = instance.get_asset_records([key])[0]
    cached = record.asset_entry.cached_status
    size = len(cached.serialized_materialized_partition_subset or "") if cached else 0
    return seconds, size


def newest_storage_id(instance) -> int:
    import dagster as dg

    from calmon_assets.defs.alerts.sensors import OFFSETS

    newest = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=OFFSETS), limit=1, ascending=False)
    return newest.records[0].storage_id if newest.records else 0


def hourly_cycle(history: History, fleet, hour: datetime, results_table) -> tuple[str, int]:
    """One hourly cycle of the whole fleet: a run and a materialization per deployment (all its
    enabled devices), their rows written to the results table. Returns the slack_alerts cursor just
    before it and the device results it holds."""
    cursor = str(newest_storage_id(history.instance))
    rows = []
    for deployment in fleet.deployments:
        device_ids = [device.id for device in deployment.devices if device.enabled]
        if device_ids:
            rows += history.report(deployment.name, hour, device_ids)
    results_table.write(rows)
    return cursor, len(rows)


def slack_tick(instance, defs, cursor: str, results: int, slack_server: SlackServer) -> tuple[float, float, int]:
    """(whole sensor tick, its Dagster part, messages sent) with the cursor before `results` new
    device results."""
    import dagster as dg

    from calmon_assets.defs.alerts.sensors import OFFSETS, SLACK_CURSOR_KEY, result_entries, result_origins

    def dagster_part():
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=OFFSETS, after_storage_id=int(cursor)), limit=SLACK_BACKLOG, ascending=True
        ).records
        checked = [r for r in records if result_entries(r.asset_materialization)]
        return len(result_origins(instance, checked))

    part, count = timed(dagster_part)
    if count != results:
        raise RuntimeError(f"the slack_alerts fetch after {cursor} holds {count} device results, expected {results}")
    instance.run_storage.set_cursor_values({SLACK_CURSOR_KEY: cursor})
    sensor = defs.get_sensor_def("slack_alerts")
    context = dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs)
    received = slack_server.received
    whole, _ = timed(sensor.evaluate_tick, context)
    after = instance.run_storage.get_cursor_values({SLACK_CURSOR_KEY}).get(SLACK_CURSOR_KEY)
    if after != str(newest_storage_id(instance)):
        raise RuntimeError(f"slack_alerts stopped at cursor {after}, not at the cycle's last result")
    return whole, part, slack_server.received - received


def failed_checks_tick(instance, defs, history: History, hour: datetime) -> tuple[float, int]:
    """Seconds for the run-failure sensor with NEW_FAILURES deployment runs of `hour` failed since
    its cursor; the materializations it reported."""
    import dagster as dg
    from dagster._core.definitions.run_status_sensor_definition import RunStatusSensorCursor

    from calmon_assets.defs.alerts.sensors import OFFSETS, result_entries

    before = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_FAILURE, limit=1).records
    cursor = RunStatusSensorCursor(
        record_id=before[0].storage_id if before else -1,
        record_timestamp=datetime.fromtimestamp(before[0].timestamp, UTC).isoformat() if before else None,
    ).to_json()
    history.fail_runs(hour, [f"site-{d:02d}" for d in range(NEW_FAILURES)])
    reported = newest_storage_id(instance)
    sensor = defs.get_sensor_def("record_failed_checks")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources, definitions=defs)
    seconds, _ = timed(sensor.evaluate_tick, context)
    new = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=OFFSETS, after_storage_id=reported), limit=NEW_FAILURES + 1
    ).records
    if len(new) != NEW_FAILURES:
        raise RuntimeError(f"record_failed_checks reported {len(new)} results for {NEW_FAILURES} failed runs")
    for record in new:
        history.size += len(result_entries(record.asset_materialization))
    return seconds, len(new)


def schedule_tick(instance, workspace_context, expected_runs: int) -> float:
    """The scheduler daemon's loop over one hourly tick of calibration_check_schedule, which makes
    one run per deployment with enabled devices (`expected_runs`); the runs it queued are deleted
    afterwards so they do not count as history."""
    from dagster._scheduler.scheduler import launch_scheduled_runs

    logger = logging.getLogger("dagster_scale.scheduler")
    now = datetime.now(UTC)
    # the first pass starts the schedule (its default status is RUNNING); the next :05 is the tick
    list(launch_scheduled_runs(workspace_context, logger, now, iteration_times={}))
    tick_time = now.replace(minute=5, second=0, microsecond=0) + timedelta(hours=1)
    seconds, _ = timed(
        lambda: list(
            launch_scheduled_runs(workspace_context, logger, tick_time + timedelta(minutes=1), iteration_times={})
        )
    )
    ticks = [
        tick
        for state in instance.all_instigator_state()
        if state.instigator_type.value == "SCHEDULE"
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
    ]
    checks = [t for t in ticks if t.instigator_name == "calibration_check_schedule"]
    run_ids = [run_id for tick in checks for run_id in tick.run_ids]
    if len(run_ids) != expected_runs:
        found = [(t.status, t.skip_reason, t.error and t.error.message, len(t.run_ids)) for t in checks]
        raise RuntimeError(f"the schedule tick created {len(run_ids)} check runs, expected {expected_runs}: {found}")
    for tick in ticks:  # the maintenance schedule's :50 tick may have fallen in the window too
        for run_id in tick.run_ids:
            instance.delete_run(run_id)
    # the next size's tick is an hour later: drop the schedule's state so it starts afresh
    # (and its ticks: the next tick is at the same time, and would be taken for done)
    for state in instance.all_instigator_state():
        if state.instigator_type.value == "SCHEDULE":
            instance.purge_ticks(state.instigator_origin_id, state.selector_id, before=tick_time.timestamp() + 7200)
            instance.delete_instigator_state(state.instigator_origin_id, state.selector_id)
    return seconds


def status_cache_probe(sizes: list[int]) -> list[dict]:
    """The asset status cache of a deployment x hour asset at sizes the event log cannot be grown to
    here: Dagster keeps a multi-partitioned asset's materialized partitions as one serialized set of
    keys (DefaultPartitionsSubset), rewritten when new results arrive and read back on every
    partitions page; measured on that structure directly. Keys are laid out deployment by deployment
    within each hour from 2025-01-01 on: 10 deployments (87,600 = one year of them) as long as the
    hours reach, more deployments beyond."""
    import gc

    import dagster as dg

    hours = dg.HourlyPartitionsDefinition(start_date="2025-01-01-00:00")
    hour_keys = hours.get_partition_keys()
    rows = []
    for size in sizes:
        count = max(DEPLOYMENTS, math.ceil(size / len(hour_keys)))
        deployments = dg.StaticPartitionsDefinition([f"site-{d:02d}" for d in range(count)])
        multi = dg.MultiPartitionsDefinition({"deployment": deployments, "time": hours})
        keys = [
            dg.MultiPartitionKey({"deployment": f"site-{i % count:02d}", "time": hour_keys[i // count]})
            for i in range(size)
        ]
        gc.collect()
        before = rss_mib()
        subset = multi.empty_subset().with_partition_keys(keys)
        serialize, text = timed(subset.serialize)
        deserialize, loaded = timed(multi.deserialize_subset, text)
        assert len(loaded) == size
        rows.append(
            {
                "size": size,
                "deployments": count,
                "serialize": serialize,
                "deserialize": deserialize,
                "cache_mib": len(text) / 2**20,
                "rss_growth_mib": rss_mib() - before,
            }
        )
        del keys, subset, text, loaded
    return rows


def print_cache_table(rows: list[dict]) -> None:
    sizes = [r["size"] for r in rows]
    year_measured = YEAR_PARTITIONS in sizes
    print(
        f"\nasset status cache of one deployment x hour asset, measured on Dagster's subset at "
        f"{', '.join(f'{n:,}' for n in sizes)} partitions "
        f"({', '.join(str(r['deployments']) for r in rows)} deployments); {YEAR_PARTITIONS:,} is one year of "
        f"10 deployments ({'measured' if year_measured else 'extrapolated, last column'})"
    )
    tail = "" if year_measured else f"{YEAR_PARTITIONS:>14,}"
    print(f"{'':44}{''.join(f'{n:>12,}' for n in sizes)}{tail}")
    for key, label in [
        ("serialize", "cache written, per update (s)"),
        ("deserialize", "cache read, per page load (s)"),
        ("cache_mib", "cache size (MiB)"),
        ("rss_growth_mib", "memory while held (MiB)"),
    ]:
        values = [r[key] for r in rows]
        cells = "".join(f"{v:>12.2f}" for v in values)
        tail = "" if year_measured else f"{fit(sizes, values, YEAR_PARTITIONS):>14.2f}"
        print(f"{label:44}{cells}{tail}")


def fit(sizes: list[int], values: list[float], at: int) -> float:
    """a + b*N through the points (least squares), evaluated at N = at; b >= 0."""
    mean_n, mean_v = statistics.fmean(sizes), statistics.fmean(values)
    var = sum((n - mean_n) ** 2 for n in sizes)
    slope = sum((n - mean_n) * (v - mean_v) for n, v in zip(sizes, values, strict=True)) / var if var else 0.0
    if slope <= 0:  # no growth above the noise of the measured points: flat, at the worst one measured
        return max(values)
    return mean_v + slope * (at - mean_n)


def dagster_yaml_for(storage: str, postgres_url: str | None) -> str:
    from calmon_cli.instance import dagster_yaml

    text = dagster_yaml(4)
    if storage == "postgres":
        text += f"storage:\n  postgres:\n    postgres_url: {postgres_url}\n"
    return text


def measure_storage(storage: str, args, config_dir: Path, slack_server: SlackServer) -> tuple[list[dict], dict]:
    import dagster as dg
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget

    from calmon_assets.definitions import build_definitions
    from calmon_assets.defs.devices.sync import sync_devices

    rows: list[dict] = []
    with ExitStack() as stack:
        postgres_url = None
        if storage == "postgres":
            from tests.servers import postgres_server

            # psycopg2 is what dagster-postgres ships with; SQLAlchemy's bare postgresql:// means psycopg 3
            postgres_url = stack.enter_context(postgres_server()).url.replace("postgresql://", "postgresql+psycopg2://")
        home = Path(tempfile.mkdtemp(prefix=f"calmon-dagster-{storage}-", dir=args.home_root))
        home.joinpath("dagster.yaml").write_text(dagster_yaml_for(storage, postgres_url))
        os.environ["DAGSTER_HOME"] = str(home)
        instance = stack.enter_context(dg.DagsterInstance.get())
        defs = build_definitions(str(config_dir))
        fleet = defs.resources["site"].load().fleet
        sync_devices(instance, fleet)  # device and deployment partitions, as the sync_devices sensor adds them
        results_table = defs.resources["results_table"].get_client()
        results_table.ensure_table()
        target = ModuleTarget("calmon_assets.definitions", "defs", str(ROOT), "calmon_assets")
        workspace = stack.enter_context(create_test_daemon_workspace_context(target, instance))
        this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        # the newest hours are the hourly cycles', one per size (fresh partitions, as a real cycle's);
        # the history lies before them
        history = History(
            instance, args.devices, this_hour - timedelta(hours=len(args.sizes)), result_metadata_template()
        )
        enabled_deployments = sum(1 for d in fleet.deployments if any(device.enabled for device in d.devices))
        for index, size in enumerate(args.sizes):
            spent = history.grow(size)
            results, partitions = history.size, len(history.partitions)
            print(
                f"  {storage}: history at {results:,} device results in {partitions:,} partitions "
                f"(+{spent:.0f} s to write)",
                flush=True,
            )
            cold, cache_bytes = partitions_page(workspace.create_request_context, True, instance)
            # one new deployment-hour since the cache was written, as on a page load between checks
            history.grow(history.size + 1)
            warm, _ = partitions_page(workspace.create_request_context, False, instance)
            cycle_hour = this_hour - timedelta(hours=index)
            cursor, cycle_results = hourly_cycle(history, fleet, cycle_hour, results_table)
            if index == 0:  # the first call pays one-off costs (imports, the results table's first reads)
                slack_tick(instance, defs, cursor, cycle_results, slack_server)
            slack_whole, slack_part, messages = slack_tick(instance, defs, cursor, cycle_results, slack_server)
            failed, _ = failed_checks_tick(instance, defs, history, cycle_hour)
            schedule = schedule_tick(instance, workspace, enabled_deployments)
            schedule *= len(fleet.deployments) / enabled_deployments
            rows.append(
                {
                    "storage": storage,
                    "size": results,
                    "partitions": partitions,
                    "page_cold": cold,
                    "page_warm": warm,
                    "cache_mib": cache_bytes / 2**20,
                    "slack_tick": slack_whole,
                    "slack_dagster": slack_part,
                    "slack_messages": messages,
                    "failed_tick": failed,
                    "schedule_tick": schedule,
                    "rss_mib": rss_mib(),
                    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "code_server_rss_mib": max((rss_mib(p) for p in child_pids()), default=float("nan")),
                    "disk_mib": (
                        sum(f.stat().st_size for f in home.rglob("*") if f.is_file()) / 2**20
                        if storage == "sqlite"
                        else float("nan")
                    ),
                }
            )
            print("   ", {k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
        per_deployment = max(1, args.devices // DEPLOYMENTS)
        fleet_per_deployment = max(len(d.devices) for d in fleet.deployments)
        sizes = {
            "history_devices_per_partition": per_deployment,
            "fleet_devices_per_partition": fleet_per_deployment,
            "history_bytes": materialization_bytes(history, per_deployment),
            "fleet_bytes": materialization_bytes(history, fleet_per_deployment),
        }
    return rows, sizes


METRICS = [
    ("page_cold", "partitions page, cold cache (s)", "page"),
    ("page_warm", "partitions page, warm cache (s)", "page"),
    ("slack_tick", "slack_alerts tick, 1,000 new results (s)", "tick"),
    ("slack_dagster", "  of which Dagster queries (s)", "tick"),
    ("failed_tick", f"record_failed_checks tick, {NEW_FAILURES} new (s)", "tick"),
    ("schedule_tick", "schedule tick, 1,000 devices = 10 runs (s) *", "tick"),
    ("cache_mib", "asset status cache (MiB)", None),
    ("rss_mib", "webserver/daemon process RSS (MiB)", "rss_mib"),
    ("code_server_rss_mib", "code server RSS (MiB)", "rss_mib"),
    ("disk_mib", "instance on disk (MiB) **", None),
]


def print_table(rows: list[dict], sizes_info: dict[str, dict]) -> None:
    for storage in dict.fromkeys(r["storage"] for r in rows):
        mine = [r for r in rows if r["storage"] == storage]
        measured = [r["partitions"] for r in mine]
        info = sizes_info[storage]
        results = [r["size"] for r in mine]
        messages = [r["slack_messages"] for r in mine]
        print(
            f"\n{storage}: measured at {', '.join(f'{n:,}' for n in results)} device results "
            f"({', '.join(f'{n:,}' for n in measured)} deployment-hour partitions, "
            f"{info['history_devices_per_partition']} devices each); the last column is extrapolated "
            f"(a + b*N fit over partitions) to 1,000 devices x 1 year"
        )
        print(f"{'device results':44}{''.join(f'{n:>12,}' for n in results)}{YEAR_RESULTS:>14,}")
        print(f"{'partitions of calibration_offsets':44}{''.join(f'{n:>12,}' for n in measured)}"
              f"{YEAR_PARTITIONS:>14,}  {'target':>10}")  # fmt: skip
        for key, label, target in METRICS:
            values = [r[key] for r in mine]
            if any(v != v for v in values):  # nan: not measured on this storage
                continue
            year = fit(measured, values, YEAR_PARTITIONS)
            if key == "disk_mib":  # each of the year's partitions holds 100 devices, not the history's
                year += YEAR_PARTITIONS * (info["fleet_bytes"] - info["history_bytes"]) / 2**20
            goal = TARGETS.get(target) if target else None
            verdict = "" if goal is None else ("  PASS" if year < goal else "  MISSED")
            goal_text = "" if goal is None else (f"< {goal:g} s" if target != "rss_mib" else f"< {goal:g} MiB")
            cells = "".join(f"{v:>12.2f}" for v in values)
            print(f"{label:44}{cells}{year:>14.1f}  {goal_text:>10}{verdict}")
        print(f"{'  Slack messages the tick sent':44}{''.join(f'{n:>12}' for n in messages)}")
        print(
            "* measured with --schedule-deployments deployments' devices enabled (one run each), scaled "
            "linearly to the 10 deployments"
        )
        print(
            f"** extrapolated by partitions, plus {YEAR_PARTITIONS:,} x the serialized size difference of a "
            f"materialization of {info['fleet_devices_per_partition']} devices ({info['fleet_bytes'] / 1024:.1f} KiB) "
            f"and one of {info['history_devices_per_partition']} ({info['history_bytes'] / 1024:.1f} KiB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000,20000,60000", help="history sizes (device results) to measure at")
    parser.add_argument("--storage", default="sqlite", help="sqlite, postgres or both (comma-separated)")
    parser.add_argument(
        "--devices", type=int, default=100, help="devices carrying the synthetic history (over the 10 deployments)"
    )
    parser.add_argument(
        "--fleet", type=int, default=1000, help="devices in devices.yaml (the cycle, the schedule tick)"
    )
    parser.add_argument(
        "--schedule-deployments",
        type=int,
        default=DEPLOYMENTS,
        help="deployments whose devices are enabled (one run each in the timed schedule tick); its time "
        "is scaled to the 10 deployments. The slack_alerts cycle and the failed runs use the enabled "
        f"devices too (at least {NEW_FAILURES} deployments)",
    )
    parser.add_argument(
        "--home-root",
        default="/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir(),
        help="where the SQLite instance lives (tmpfs by default: no fsync per event, so the history "
        "can be written in minutes; reads are page-cache reads either way)",
    )
    parser.add_argument(
        "--cache-sizes",
        default=f"{YEAR_PARTITIONS},100000,300000,1000000",
        help="partitions at which the status cache structure is measured directly ('' to skip)",
    )
    args = parser.parse_args()
    args.cache_sizes = [int(s) for s in args.cache_sizes.split(",") if s]
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    if not NEW_FAILURES <= args.schedule_deployments <= DEPLOYMENTS:
        parser.error(f"--schedule-deployments must be {NEW_FAILURES} to {DEPLOYMENTS}")
    root = Path(tempfile.mkdtemp(prefix="calmon-dagster-scale-"))
    slack_server = SlackServer()
    try:
        start_date = (datetime.now(UTC) - timedelta(days=365)).strftime("%Y-%m-%d")
        config_dir = write_site(root, args.fleet, start_date, args.schedule_deployments)
        os.environ["CALMON_CONFIG_DIR"] = str(config_dir)
        os.environ["CALMON_BENCH_WEBHOOK"] = slack_server.url
        logging.getLogger("dagster").setLevel(logging.WARNING)
        # Dagster's notes on the definitions (preview features, get_sensor_def) would repeat every tick
        warnings.filterwarnings("ignore", message=".*(preview|get_sensor_def).*")
        rows: list[dict] = []
        sizes_info: dict[str, dict] = {}
        for storage in args.storage.split(","):
            try:
                measured, sizes_info[storage.strip()] = measure_storage(storage.strip(), args, config_dir, slack_server)
                rows += measured
            finally:
                for leftover in Path(args.home_root).glob(f"calmon-dagster-{storage.strip()}-*"):
                    shutil.rmtree(leftover, ignore_errors=True)
        print_table(rows, sizes_info)
        if args.cache_sizes:
            print_cache_table(status_cache_probe(args.cache_sizes))
    finally:
        slack_server.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
