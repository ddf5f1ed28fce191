"""Dagster at fleet scale: what the partitions page, the sensors and the schedule cost as the event
log grows, fitted and extrapolated to 1,000 devices x 1 year of hourly checks (8.76 M results).

    .venv/bin/python benchmarks/dagster_scale.py                         # SQLite, 5k/20k/60k results
    .venv/bin/python benchmarks/dagster_scale.py --storage sqlite,postgres --sizes 2000,8000,20000

For each instance storage (calmon's dagster.yaml; SQLite as `calmon dev` has it, Postgres as the Helm
chart has it) the history is grown step by step to each size; every result is

  - a run of calibration_check_job in the run storage (device, deployment and partition tags; 2 %
    of them failed, with Dagster's run-failure event), and
  - a calibration_offsets materialization of its (device, hour) partition carrying the metadata
    calibration_offsets writes (status, offsets, frames, the diagnostic thumbnail and the trend plot
    as base64 images), reported through instance.report_runless_asset_event with the run's id in
    its metadata, as record_failed_checks reports it. (Runless: on SQLite a run's own events go to
    one database file per run, which would make the synthetic history cost one file per result.)

`--devices` devices carry the history (hour after hour, the newest at the current hour); devices.yaml
lists `--fleet` devices (1,000), all registered as partitions, for the schedule tick. Timed at each
size, on the real code location (calmon_assets.definitions in its own gRPC code server, as the
daemon and the webserver load it):

  - partitions page: the GraphQL PartitionHealthQuery the UI's asset partitions page sends
    (dagster-ui usePartitionHealthData.tsx), cold (the asset status cache rebuilt, as after an
    upgrade or a cache reset) and warm (cached, one new result since);
  - slack_alerts tick: the sensor evaluated with its cursor 200 results back (its fetch limit, a
    busy tick right after the hourly cycle); "dagster part" is the same without the results table;
  - record_failed_checks tick: the run-failure sensor with 5 new failed runs since its cursor;
  - schedule tick: the scheduler daemon's own loop (dagster._scheduler) launching the hourly tick for
    all 1,000 devices: evaluation, run-key checks, 1,000 runs created and queued;
  - RSS of this process (the webserver's and the daemon's part) and of the code server.

Times are fitted as a + b*N over the sizes and extrapolated to N = 8.76 M; the table says which
numbers are extrapolated.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

YEAR_RESULTS = 1000 * 24 * 365  # 1,000 devices checked hourly for a year
TARGETS = {"page": 5.0, "tick": 10.0, "rss_mib": 1024.0}
SLACK_BACKLOG = 200  # slack_alerts' fetch limit: the most one tick handles
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


def write_site(root: Path, fleet_devices: int, start_date: str, enabled: int) -> Path:
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
    for d in range(10):
        devices = [
            {
                "id": f"cam-{i:04d}",
                "camera": {"base_url": f"http://127.0.0.1:9/{i}"},
                "intrinsics": {"width": 1920, "height": 1080, "hfov_by_zoom": {1.0: 60.0}},
                "reference_grid": {"yaws": [0, 40], "pitches": [0], "zoom": 1.0},
                "enabled": i < enabled,
            }
            for i in range(d, fleet_devices, 10)
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
    """Metadata shaped like calibration_offsets' own (calmon_assets.defs.checks.asset_checks), with a
    real diagnostic thumbnail (a scene photograph, 1000 px wide) and a real trend plot."""
    import cv2
    import dagster as dg
    import numpy as np

    from calmon_assets.defs.metadata import image_md
    from calmon_core.plots import offset_trend_png, thumbnail_png

    rng = np.random.default_rng(seed)
    scenes = Path(os.environ.get("CALMON_SCENES_DIR", ROOT.parent / "shared" / "data" / "scenes"))
    photo = next(iter(sorted(scenes.glob("*.jpg"))), None)
    image = cv2.imread(str(photo)) if photo else rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    diagnostic = thumbnail_png(cv2.imencode(".png", image)[1].tobytes(), 1000)
    times = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(48)]
    offsets = {a: list(rng.normal(0, 0.1, 48)) for a in ("yaw", "pitch", "roll")}
    trend = offset_trend_png(times, offsets, 0.5, "site-00/cam-0000: last 48 checks")
    frames = [{"yaw": 10.0 * i, "pitch": 0.0, "inliers": 300, "residual_px": 0.8} for i in range(4)]
    return {
        "status": "ok",
        "success": True,
        "deployment": "site-00",
        "yaw_offset_deg": 0.01,
        "pitch_offset_deg": -0.02,
        "roll_offset_deg": 0.0,
        "uncertainty_deg": dg.MetadataValue.json({"yaw": 0.01, "pitch": 0.01, "roll": 0.02}),
        "inliers": 1200,
        "algorithm_version": "bench",
        "failure_log": "",
        "files": "site-00/cam-0000/query_scan/20260101T000000Z/",
        "frames": dg.MetadataValue.json(frames),
        "diagnostic": image_md(diagnostic, "matches and view outlines"),
        "trend": image_md(trend, "offset trend", "image/png"),
    }


class History:
    """Grows one instance's history to a size; remembers what it wrote."""

    def __init__(self, instance, devices: int, last_hour: datetime, metadata: dict):
        self.instance, self.devices, self.last_hour, self.metadata = instance, devices, last_hour, metadata
        self.size = 0
        self.rng = random.Random(0)

    def grow(self, target: int) -> float:
        """Add results up to `target` (the newest at the current hour); returns seconds spent."""
        import dagster as dg
        from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
        from dagster._core.utils import make_new_run_id

        from calmon_assets.defs.checks.failed_runs import FAILED_RUN_KEY
        from calmon_assets.defs.partitions import check_partition_key
        from calmon_assets.defs.runs import DEPLOYMENT_TAG, DEVICE_TAG

        started = time.perf_counter()
        # Laid out backwards from the current hour: a bigger size reaches older hours.
        for i in range(self.size, target):
            device_id = f"cam-{i % self.devices:04d}"
            hour = self.last_hour - timedelta(hours=i // self.devices)
            time_key = hour.strftime("%Y-%m-%d-%H:%M")
            key = check_partition_key(device_id, time_key)
            deployment = f"site-{(i % self.devices) % 10:02d}"
            failed = self.rng.random() < FAILED_SHARE
            run = DagsterRun(
                job_name="calibration_check_job",
                run_id=make_new_run_id(),
                status=DagsterRunStatus.STARTED if failed else DagsterRunStatus.SUCCESS,
                tags={
                    DEPLOYMENT_TAG: deployment,
                    DEVICE_TAG: device_id,
                    "dagster/partition": str(key),
                    "dagster/partition/device": device_id,
                    "dagster/partition/time": time_key,
                },
            )
            self.instance.add_run(run)
            if failed:
                self.instance.report_run_failed(run, "query_capture: camera offline")
            metadata = dict(self.metadata)
            metadata["status"] = "failed" if failed else "ok"
            metadata[FAILED_RUN_KEY] = run.run_id
            self.instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key="calibration_offsets", partition=str(key), metadata=metadata)
            )
        self.size = target
        return time.perf_counter() - started


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


def slack_tick(instance, defs) -> tuple[float, float]:
    """(whole sensor tick, its Dagster part) with SLACK_BACKLOG results since the cursor."""
    import dagster as dg

    from calmon_assets.defs.alerts.sensors import OFFSETS, SLACK_CURSOR_KEY, result_origins

    newest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=OFFSETS), limit=SLACK_BACKLOG + 1, ascending=False
    ).records
    cursor = str(newest[-1].storage_id if len(newest) > SLACK_BACKLOG else 0)

    def dagster_part():
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=OFFSETS, after_storage_id=int(cursor)), limit=SLACK_BACKLOG, ascending=True
        ).records
        result_origins(instance, records)
        return len(records)

    part, count = timed(dagster_part)
    assert count == min(SLACK_BACKLOG, len(newest)), count
    instance.run_storage.set_cursor_values({SLACK_CURSOR_KEY: cursor})
    sensor = defs.get_sensor_def("slack_alerts")
    context = dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs)
    whole, _ = timed(sensor.evaluate_tick, context)
    return whole, part


def failed_checks_tick(instance, defs) -> float:
    import dagster as dg
    from dagster._core.definitions.run_status_sensor_definition import RunStatusSensorCursor

    failures = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_FAILURE, limit=NEW_FAILURES + 1).records
    before = failures[-1]
    cursor = RunStatusSensorCursor(
        record_id=before.storage_id, record_timestamp=datetime.fromtimestamp(before.timestamp, UTC).isoformat()
    ).to_json()
    sensor = defs.get_sensor_def("record_failed_checks")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources, definitions=defs)
    seconds, _ = timed(sensor.evaluate_tick, context)
    return seconds


def schedule_tick(instance, workspace_context, fleet_devices: int) -> float:
    """The scheduler daemon's loop over one hourly tick of calibration_check_schedule for the
    `fleet_devices` enabled devices; the runs it queued are deleted afterwards so they do not count
    as history."""
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
    if len(run_ids) != fleet_devices:
        found = [(t.status, t.skip_reason, t.error and t.error.message, len(t.run_ids)) for t in checks]
        raise RuntimeError(f"the schedule tick created {len(run_ids)} check runs, expected {fleet_devices}: {found}")
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
    """The asset status cache of a device x hour asset at sizes the event log cannot be grown to
    here: Dagster keeps a multi-partitioned asset's materialized partitions as one serialized set of
    keys (DefaultPartitionsSubset), rewritten when new results arrive and read back on every
    partitions page; measured on that structure directly."""
    import gc

    import dagster as dg

    devices = dg.StaticPartitionsDefinition([f"cam-{i:04d}" for i in range(1000)])
    hours = dg.HourlyPartitionsDefinition(start_date="2025-01-01-00:00")
    multi = dg.MultiPartitionsDefinition({"device": devices, "time": hours})
    hour_keys = hours.get_partition_keys()
    rows = []
    for size in sizes:
        keys = [
            dg.MultiPartitionKey({"device": f"cam-{i % 1000:04d}", "time": hour_keys[i // 1000]}) for i in range(size)
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
    print(
        f"\nasset status cache of one device x hour asset, measured on Dagster's subset at "
        f"{', '.join(f'{n:,}' for n in sizes)} partitions; the {YEAR_RESULTS:,} column is extrapolated"
    )
    print(f"{'':44}{''.join(f'{n:>12,}' for n in sizes)}{YEAR_RESULTS:>14,}")
    for key, label in [
        ("serialize", "cache written, per update (s)"),
        ("deserialize", "cache read, per page load (s)"),
        ("cache_mib", "cache size (MiB)"),
        ("rss_growth_mib", "memory while held (MiB)"),
    ]:
        values = [r[key] for r in rows]
        cells = "".join(f"{v:>12.2f}" for v in values)
        print(f"{label:44}{cells}{fit(sizes, values, YEAR_RESULTS):>14.1f}")


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


def measure_storage(storage: str, args, config_dir: Path, root: Path) -> list[dict]:
    import dagster as dg
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget

    from calmon_assets.definitions import build_definitions
    from calmon_assets.defs.partitions import device_partitions

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
        instance.add_dynamic_partitions(device_partitions.name, [f"cam-{i:04d}" for i in range(args.fleet)])
        defs = build_definitions(str(config_dir))
        target = ModuleTarget("calmon_assets.definitions", "defs", str(ROOT), "calmon_assets")
        workspace = stack.enter_context(create_test_daemon_workspace_context(target, instance))
        last_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        history = History(instance, args.devices, last_hour, result_metadata_template())
        for size in args.sizes:
            spent = history.grow(size)
            print(f"  {storage}: history at {size:,} results (+{spent:.0f} s to write)", flush=True)
            cold, cache_bytes = partitions_page(workspace.create_request_context, True, instance)
            # one new result since the cache was written, as on a page load between checks
            history.grow(size + 1)
            history.size = size + 1
            warm, _ = partitions_page(workspace.create_request_context, False, instance)
            if size == args.sizes[0]:  # the first call pays one-off costs (imports, the results table)
                slack_tick(instance, defs)
            slack_whole, slack_part = slack_tick(instance, defs)
            failed = failed_checks_tick(instance, defs)
            schedule = schedule_tick(instance, workspace, args.schedule_devices)
            schedule *= args.fleet / args.schedule_devices
            rows.append(
                {
                    "storage": storage,
                    "size": size,
                    "page_cold": cold,
                    "page_warm": warm,
                    "cache_mib": cache_bytes / 2**20,
                    "slack_tick": slack_whole,
                    "slack_dagster": slack_part,
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
    return rows


METRICS = [
    ("page_cold", "partitions page, cold cache (s)", "page"),
    ("page_warm", "partitions page, warm cache (s)", "page"),
    ("slack_tick", f"slack_alerts tick, {SLACK_BACKLOG} new (s)", "tick"),
    ("slack_dagster", "  of which Dagster queries (s)", "tick"),
    ("failed_tick", f"record_failed_checks tick, {NEW_FAILURES} new (s)", "tick"),
    ("schedule_tick", "schedule tick, 1,000 devices (s) *", "tick"),
    ("cache_mib", "asset status cache (MiB)", None),
    ("rss_mib", "webserver/daemon process RSS (MiB)", "rss_mib"),
    ("code_server_rss_mib", "code server RSS (MiB)", "rss_mib"),
    ("disk_mib", "instance on disk (MiB)", None),
]


def print_table(rows: list[dict], sizes: list[int]) -> None:
    for storage in dict.fromkeys(r["storage"] for r in rows):
        mine = [r for r in rows if r["storage"] == storage]
        measured = [r["size"] for r in mine]
        header = "".join(f"{n:>12,}" for n in measured)
        print(f"\n{storage}: measured at {', '.join(f'{n:,}' for n in measured)} results; "
              f"the {YEAR_RESULTS:,} column is extrapolated (a + b*N fit)")  # fmt: skip
        print(f"{'':44}{header}{YEAR_RESULTS:>14,}  {'target':>10}")
        for key, label, target in METRICS:
            values = [r[key] for r in mine]
            if any(v != v for v in values):  # nan: not measured on this storage
                continue
            year = fit(measured, values, YEAR_RESULTS)
            goal = TARGETS.get(target) if target else None
            verdict = "" if goal is None else ("  ok" if year < goal else "  MISSED")
            goal_text = "" if goal is None else (f"< {goal:g} s" if target != "rss_mib" else f"< {goal:g} MiB")
            cells = "".join(f"{v:>12.2f}" for v in values)
            print(f"{label:44}{cells}{year:>14.1f}  {goal_text:>10}{verdict}")
    print("\n* measured with --schedule-devices enabled devices, scaled linearly to the fleet (one run each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000,20000,60000", help="history sizes (results) to measure at")
    parser.add_argument("--storage", default="sqlite", help="sqlite, postgres or both (comma-separated)")
    parser.add_argument("--devices", type=int, default=100, help="devices carrying the synthetic history")
    parser.add_argument("--fleet", type=int, default=1000, help="devices in devices.yaml (the schedule tick)")
    parser.add_argument(
        "--schedule-devices",
        type=int,
        default=50,
        help="devices of the fleet enabled for the timed schedule tick; its time is scaled to --fleet",
    )
    parser.add_argument(
        "--home-root",
        default="/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir(),
        help="where the SQLite instance lives (tmpfs by default: no fsync per event, so the history "
        "can be written in minutes; reads are page-cache reads either way)",
    )
    parser.add_argument(
        "--cache-sizes",
        default="100000,300000,1000000",
        help="partitions at which the status cache structure is measured directly ('' to skip)",
    )
    args = parser.parse_args()
    args.cache_sizes = [int(s) for s in args.cache_sizes.split(",") if s]
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    root = Path(tempfile.mkdtemp(prefix="calmon-dagster-scale-"))
    try:
        start_date = (datetime.now(UTC) - timedelta(days=365)).strftime("%Y-%m-%d")
        config_dir = write_site(root, args.fleet, start_date, args.schedule_devices)
        os.environ["CALMON_CONFIG_DIR"] = str(config_dir)
        os.environ.pop("CALMON_BENCH_WEBHOOK", None)
        logging.getLogger("dagster").setLevel(logging.WARNING)
        rows: list[dict] = []
        for storage in args.storage.split(","):
            try:
                rows += measure_storage(storage.strip(), args, config_dir, root)
            finally:
                for leftover in Path(args.home_root).glob(f"calmon-dagster-{storage.strip()}-*"):
                    shutil.rmtree(leftover, ignore_errors=True)
        print_table(rows, args.sizes)
        if args.cache_sizes:
            print_cache_table(status_cache_probe(args.cache_sizes))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
