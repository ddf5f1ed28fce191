"""Fleet cycle benchmark: one scheduled check cycle of 50, 100 and 200 simulated devices through
calmon's Dagster job, as `calmon monitor` (cron) and the demo run it (Platform.run_check_cycle: one
in-process run per deployment for the cycle's hour, runs in parallel threads, each run capturing its
devices [schedule] max_concurrent_per_deployment at once and estimating them all, then writing the
deployment's rows in one results-table write), with each design of running them; then the sustained
rate at stabilize_time 30 s.

    .venv/bin/python benchmarks/fleet_cycle.py                      # 1, 50, 100, 200 devices; 100 at 30 s
    .venv/bin/python benchmarks/fleet_cycle.py --sizes 1,3 --throughput-devices 3 --throughput-stabilize 5

A cycle of N devices checks the first N of the site (the site's deployments in order), so a cycle of
fewer devices than the site's covers fewer deployments, i.e. makes fewer runs. --per-deployment is
the site's [schedule] max_concurrent_per_deployment: captures at once inside one run (and reference
scan runs at once per deployment).

Designs (--designs): `before` is a pool of 8 run threads and nothing bounding the estimations;
`after` is Platform's default now: runs at once = default_parallel_runs(stabilize_time), estimation
and reference features in os.cpu_count() slots; `all` starts every run of the cycle at once (with
the slots). With one run per deployment a cycle has as many runs as deployments, so the designs
differ only when there are more deployments than run threads.

How each figure is measured, in the benchmark process, which holds calmon only (the simulated
cameras run in a child process and mosquitto is the broker, see benchmarks/_sim_site.py):
- wall: monotonic time around run_check_cycle; checks/h = device-checks / wall x 3600.
- CPU s/check: getrusage(RUSAGE_SELF) user + sys over the cycle (every thread: Dagster, capture,
  estimation, OpenCV's own pool) / device-checks (devices of the cycle).
- peak RSS: the process's VmHWM, reset through /proc/self/clear_refs before the cycle; "per check in
  flight" = (peak - RSS before the cycle) / device-checks of the runs alive at once.
- where a check's time goes, mean wall seconds per device-check; a run's own times are shared by its
  devices (summed over runs / device-checks: each device-check's share of its run), a device's own
  times (which overlap the run's other devices') are its own:
    queue          own: cycle start -> its run's thread starts (waiting for a free run thread)
    dagster        share: run thread wall - both steps' wall (run creation, resource set-up, event log
                   writes, IO manager, step orchestration)
    capture step   share: query_capture's wall (STEP_START -> STEP_SUCCESS in the event log)
    capture wait   own: the device's waited_seconds in query_capture's metadata (stability wait,
                   grab, confirmation)
    capture other  own: capture_device's wall (timed by wrapping it) - capture wait (waited_seconds
                   is rounded to 0.1 s, so this can read a few hundredths below 0)
    offsets step   share: calibration_offsets' wall
    estimation     own: estimate_offsets, timed by wrapping it (the wait for a CPU slot is not in it)
    table write    share: ResultsTable.write, timed by wrapping it (one Iceberg commit per run)
    offsets other  share: calibration_offsets - table write - its measuring phase (first
                   measure_offsets call's start -> last one's end: references, slot waits,
                   estimations, pictures): the results' histories, metadata, plots, corrections
  so dagster + capture step + offsets step = run wall / its devices.
- estimator CPU alone: estimate_offsets run serially on stored captures after the cycles, process
  CPU per call, each loading its reference map from disk: the part of a check's CPU no way of
  running the checks can remove. "All but the estimate" is the check's CPU less its estimate's own
  thread CPU in the cycle (estimate_offsets timed by wrapping it; OpenCV runs on the calling thread,
  calmon_assets.defs.cpu_slots), and, for comparison, less the estimator alone.
- every cycle starts from a compacted results table (ResultsTable.compact, untimed: what the hourly
  results_table_maintenance job leaves), so a later cycle does not pay for the small files of the
  ones before it; an unmeasured 1-device cycle first
  takes the first-use costs (imports, OpenCV and matplotlib set-up).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._sim_site import RESOLUTION, THRESHOLD_DEG, BenchSite  # noqa: E402, I001  (first: it picks the partitions' site)
import calmon_assets.defs.checks.assets as assets_module  # noqa: E402
import calmon_assets.defs.checks.measure as measure_module  # noqa: E402
import calmon_assets.defs.cpu_slots as cpu_slots_module  # noqa: E402
from calmon_assets.defs.partitions import check_partition_key, current_time_key  # noqa: E402
from calmon_cli.scheduler import default_parallel_runs  # noqa: E402
from resources.results_table import ResultsTable  # noqa: E402

# design: (workers passed to run_check_cycle, CPU slots); None = Platform's and the assets' defaults.
DESIGNS: dict[str, tuple[int | None, int | None]] = {
    "before": (8, 1_000_000),
    "after": (None, None),
    "all": (1_000_000, None),
}
DEFAULT_CPU_SLOTS = cpu_slots_module.CPU_SLOTS


def use_design(design: str) -> int | None:
    """Set the design's CPU slots; returns its worker count."""
    workers, slots = DESIGNS[design]
    cpu_slots_module.CPU_SLOTS = DEFAULT_CPU_SLOTS if slots is None else threading.BoundedSemaphore(slots)
    return workers


# --------------------------------------------------------------------------- instrumentation


class Timings:
    """Wall (and thread CPU) of calls to wrapped functions; with key_of, also each call's key (the
    deployment it was for: its run) and when it started and ended."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[float, float, str | None, float, float]]] = {}
        self.lock = threading.Lock()

    def wrap(self, owner, name: str, key_of=None) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start, wall, cpu = time.monotonic(), time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                record = (
                    time.perf_counter() - wall,
                    time.thread_time() - cpu,
                    key_of(*args) if key_of else None,
                    start,
                    time.monotonic(),
                )
                with self.lock:
                    self.calls.setdefault(name, []).append(record)

        setattr(owner, name, timed)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()

    def total(self, name: str, index: int = 0) -> float:
        return sum(c[index] for c in self.calls.get(name, []))

    def spans(self, name: str) -> dict[str | None, float]:
        """Per key: first call's start -> last call's end."""
        bounds: dict[str | None, tuple[float, float]] = {}
        for _, _, key, start, end in self.calls.get(name, []):
            first, last = bounds.get(key, (start, end))
            bounds[key] = (min(first, start), max(last, end))
        return {key: last - first for key, (first, last) in bounds.items()}


class RunClock:
    """When each run's thread started and ended (Platform._execute runs one deployment's check in one
    thread), per partition key."""

    def __init__(self, platform) -> None:
        self.spans: dict[str, tuple[float, float]] = {}
        original = platform._execute

        def timed(job):
            start = time.monotonic()
            try:
                return original(job)
            finally:
                self.spans[job.partition_key] = (start, time.monotonic())

        platform._execute = timed


class CommitRetries(logging.Handler):
    """Counts pyiceberg's "commit failed due to a concurrent update, retrying" (writers colliding on
    the results table) instead of printing each."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "concurrent update" in record.getMessage():
            self.count += 1


def rss_mb(field: str) -> float:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def reset_peak_rss() -> None:
    """Freed memory back to the system first (glibc keeps it otherwise, and the RSS before a cycle
    would include the previous cycle's garbage), then the high-water mark down to the RSS now."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # the peak then covers the whole process life; rss_mb still reports it


def cpu_seconds(include_children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    if include_children:  # children that have ended and been waited for
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += children.ru_utime + children.ru_stime
    return total


# --------------------------------------------------------------------------- one cycle


def step_durations(instance, run_id: str) -> tuple[dict[str, float], dict[str, float]]:
    """STEP_START -> STEP_SUCCESS/FAILURE per step, and each device's waited_seconds from
    query_capture's metadata."""
    import dagster as dg

    starts: dict[str, float] = {}
    steps: dict[str, float] = {}
    waited: dict[str, float] = {}
    types = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.ASSET_MATERIALIZATION,
    }
    for record in instance.all_logs(run_id, of_type=types):
        event = record.dagster_event
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            starts[record.step_key] = record.timestamp
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            steps[record.step_key] = record.timestamp - starts.get(record.step_key, record.timestamp)
        elif record.step_key == "query_capture":
            # {device: {"waited_seconds": ...}} (calmon_assets.defs.checks.asset_checks.capture_summary_metadata)
            value = event.event_specific_data.materialization.metadata.get("captures")
            for device_id, capture in (value.value if value is not None else {}).items():
                if capture.get("waited_seconds") is not None:
                    waited[device_id] = float(capture["waited_seconds"])
    return steps, waited


def run_cycle(
    site: BenchSite,
    clock: RunClock,
    timings: Timings,
    retries: CommitRetries,
    devices: list[str],
    time_key: str,
    workers: int | None,
    stabilize_time: float,
) -> dict:
    platform = site.platform
    # every cycle starts from a compacted results table, as the results_table_maintenance job keeps
    # it: otherwise each cycle pays for the small files (one per run) of all the cycles before it
    platform.resources["results_table"].get_client().compact()
    timings.reset()
    retries.count = 0
    reset_peak_rss()
    rss_before = rss_mb("VmRSS")
    cpu0, fleet_cpu0 = cpu_seconds(), site.fleet.cpu_seconds()
    started = time.monotonic()
    runs = platform.run_check_cycle(time_key, device_ids=devices, workers=workers)
    wall = time.monotonic() - started
    cpu = cpu_seconds() - cpu0
    fleet_cpu = site.fleet.cpu_seconds() - fleet_cpu0
    peak = rss_mb("VmHWM")

    n = len(devices)
    # one CheckRun per device; a run (one deployment's partition) covers several
    by_run: dict[str, list] = {}
    for run in runs:
        by_run.setdefault(run.partition, []).append(run)
    measuring = timings.spans("measure_offsets")  # per deployment: its run's measuring phase
    parts = Counter()
    run_threads = []
    spans = []  # (start, end, devices) per run
    for partition, device_runs in by_run.items():
        span = clock.spans.get(partition)
        run_id = device_runs[0].run_id
        if span is None or run_id is None:
            continue
        start, end = span
        spans.append((start, end, len(device_runs)))
        run_threads.append(end - start)
        steps, waited = step_durations(platform.instance, run_id)
        capture_step = steps.get("query_capture", 0.0)
        offsets_step = steps.get("calibration_offsets", 0.0)
        deployment = partition.split("|", 1)[0]
        parts["queue"] += (start - started) * len(device_runs)  # each of its devices waits that long
        parts["dagster"] += (end - start) - capture_step - offsets_step
        parts["capture step"] += capture_step
        parts["capture wait"] += sum(waited.get(r.device_id, 0.0) for r in device_runs)
        parts["offsets step"] += offsets_step
        parts["measuring phase"] += measuring.get(deployment, 0.0)
    in_flight = max((sum(d for s, e, d in spans if s <= start < e) for start, _, _ in spans), default=0)
    runs_in_flight = max((sum(1 for s, e, _ in spans if s <= start < e) for start, _, _ in spans), default=0)
    parts["capture other"] = timings.total("capture_device") - parts["capture wait"]
    parts["estimation"] = timings.total("estimate_offsets")
    parts["estimation cpu (thread)"] = timings.total("estimate_offsets", 1)
    parts["table write"] = timings.total("write")
    parts["offsets other"] = parts["offsets step"] - parts["table write"] - parts["measuring phase"]

    table = platform.resources["results_table"].get_client()
    rows = [r for r in table.all_rows() if r.check_partition == time_key and r.device_id in set(devices)]
    return {
        "devices": n,
        "runs": len(by_run),
        "workers": min(workers or default_parallel_runs(stabilize_time), len(by_run)),
        "in_flight": in_flight,
        "runs_in_flight": runs_in_flight,
        "wall_s": wall,
        "checks_per_hour": n / wall * 3600,
        "cpu_s_per_check": cpu / n,
        "fleet_cpu_s": fleet_cpu,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
        "mb_per_check_in_flight": (peak - rss_before) / max(1, in_flight),
        "run_failures": len({r.partition for r in runs if not r.succeeded}),
        "device_checks_of_failed_runs": sum(1 for r in runs if not r.succeeded),
        "commit_retries": retries.count,
        "table_writes": len(timings.calls.get("write", [])),
        "rows": len(rows),
        "distinct_rows": len({r.device_id for r in rows}),
        "statuses": dict(Counter(r.status.value for r in rows)),
        "mean_s": {k: v / n for k, v in parts.items()},
        "run_p50_s": statistics.median(run_threads) if run_threads else float("nan"),
        "run_max_s": max(run_threads) if run_threads else float("nan"),
    }


def estimator_alone(root: Path, samples: int) -> float:
    """Process CPU of one estimate_offsets call, serially, on stored query captures."""
    from calmon_core.estimation import estimate_offsets

    pairs = []
    for manifest in sorted(root.glob("work/*/*/query_scan/*/manifest.json")):
        query = manifest.parent
        deployment, device = query.parts[-4], query.parts[-3]
        reference = root / "work" / "cache" / deployment / device / "reference_scan"
        if (reference / "manifest.json").is_file():
            pairs.append((reference, query))
    cpu = []
    for reference, query in pairs[:samples]:
        with tempfile.TemporaryDirectory() as diagnostics:
            start = cpu_seconds()
            estimate_offsets(reference, query, threshold_deg=THRESHOLD_DEG, diagnostics_dir=diagnostics)
            cpu.append(cpu_seconds() - start)
    return statistics.median(cpu) if cpu else float("nan")


def executor_costs(
    site: BenchSite,
    runs: int,
    next_key,
    stabilize_time: float,
    timeout: float,
    executors=("in_process", "multiprocess"),
) -> dict:
    """A launched run's path (schedule, daemon, UI): dagster.execute_job in this process, with each
    `[execution] executor`, one run at a time: `runs` deployments' partitions (the schedule's run
    of a deployment: every device of it), at a new hour each. CPU = this process + its children (the
    step processes); per device-check = run CPU / the run's devices."""
    import importlib

    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    import calmon_assets.definitions
    from calmon_assets.defs.runs import DEPLOYMENT_TAG

    deployments = [(dep["name"], len(dep["devices"])) for dep in site.spec["deployments"]][:runs]
    out = {}
    for executor in executors:
        # The ini selects the executor, as on a deployment; step processes load the definitions
        # afresh from it, this process reloads them.
        site.write_settings(stabilize_time, timeout, executor=executor)
        importlib.reload(calmon_assets.definitions)
        job = ReconstructableRepository.for_module(
            "calmon_assets.definitions", "defs", working_directory=str(Path(__file__).resolve().parent.parent)
        ).get_reconstructable_job("calibration_check")
        # Dagster caches the loaded definitions per equal (pointer, job name), i.e. across the reload.
        type(job).get_repository_definition.cache_clear()
        type(job).get_definition.cache_clear()
        assert job.get_definition().executor_def.name == executor, job.get_definition().executor_def.name
        walls, cpus, ok, checks = [], [], 0, 0
        for deployment, devices in deployments:
            time_key = next_key()
            # what the schedule's RunRequest gives a deployment's run (check_run_requests)
            tags = {
                "dagster/partition": str(check_partition_key(deployment, time_key)),
                "dagster/partition/deployment": deployment,
                "dagster/partition/time": time_key,
                DEPLOYMENT_TAG: deployment,
            }
            run_config = site.platform.run_config
            cpu0, wall0 = cpu_seconds(include_children=True), time.monotonic()
            with dg.execute_job(
                job, instance=site.platform.instance, run_config=run_config, tags=tags, raise_on_error=False
            ) as result:
                ok += result.success
            walls.append(time.monotonic() - wall0)
            cpus.append(cpu_seconds(include_children=True) - cpu0)
            checks += devices
        out[executor] = {
            "runs": len(deployments),
            "checks": checks,
            "succeeded": ok,
            "wall_s_per_run": statistics.mean(walls),
            "cpu_s_per_check": sum(cpus) / max(1, checks),
        }
    site.write_settings(stabilize_time, timeout)
    code = (
        "import resource, calmon_assets.definitions; u = resource.getrusage(resource.RUSAGE_SELF); "
        "print(u.ru_utime + u.ru_stime)"
    )
    starts = [
        float(
            subprocess.run(
                [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True, timeout=300
            ).stdout.split()[-1]
        )
        for _ in range(3)
    ]
    out["process_start_cpu_s"] = statistics.median(starts)
    return out


# --------------------------------------------------------------------------- printing


def print_cycles(title: str, results: list[tuple[str, dict]]) -> None:
    print(f"\n{title}")
    print(
        "(one run per deployment; workers: run threads; in flight: device-checks (runs) alive at once; "
        "CPU s/chk: process CPU / device-checks; failed runs: runs (their device-checks); "
        "rows: results rows of the cycle's hour (distinct devices))"
    )
    head = (
        f"{'design':<7} {'devices':>7} {'runs':>4} {'workers':>7} {'in flight':>11} {'wall s':>7} {'checks/h':>8} "
        f"{'CPU s/chk':>9} {'peak RSS MB':>11} {'MB/chk in flight':>16} {'rows':>8} {'failed runs':>11} "
        f"{'writes':>6} {'commit retries':>14}  statuses"
    )
    print(head)
    print("-" * len(head))
    for design, r in results:
        statuses = " ".join(f"{k}={v}" for k, v in sorted(r["statuses"].items()))
        in_flight = f"{r['in_flight']} ({r['runs_in_flight']})"
        rows = f"{r['rows']} ({r['distinct_rows']})"
        failed = f"{r['run_failures']} ({r['device_checks_of_failed_runs']})"
        print(
            f"{design:<7} {r['devices']:>7} {r['runs']:>4} {r['workers']!s:>7} {in_flight:>11} {r['wall_s']:>7.1f} "
            f"{r['checks_per_hour']:>8.0f} {r['cpu_s_per_check']:>9.2f} {r['peak_rss_mb']:>11.0f} "
            f"{r['mb_per_check_in_flight']:>16.1f} {rows:>8} {failed:>11} {r['table_writes']:>6} "
            f"{r['commit_retries']:>14}  {statuses}"
        )


PARTS = (
    "queue",
    "dagster",
    "capture step",
    "capture wait",
    "capture other",
    "offsets step",
    "estimation",
    "table write",
    "offsets other",
)
HOW = {  # how each column is taken, per device-check: "share" of its run's time, or its "own"
    "queue": "own",
    "dagster": "share",
    "capture step": "share",
    "capture wait": "own",
    "capture other": "own",
    "offsets step": "share",
    "estimation": "own",
    "table write": "share",
    "offsets other": "share",
}


def print_breakdown(title: str, results: list[tuple[str, dict]]) -> None:
    print(f"\n{title}")
    print(
        "(share: the run's wall seconds / its devices, a device-check's part of the run it shares with its "
        "deployment's other devices;\n own: the device's own wall seconds, overlapping its run's other devices'. "
        "dagster + capture step + offsets step = run wall / devices;\n capture wait + capture other = one "
        "capture_device call, estimation = one estimate_offsets call, per device; dagster = run thread - both "
        "steps;\n offsets other = offsets step - table write - measuring phase (first measure_offsets start -> "
        "last end); run p50/max: a run's thread wall)"
    )
    head = (
        f"{'design':<7} {'devices':>7} "
        + " ".join(f"{p:>13}" for p in PARTS)
        + f" {'run p50':>8} {'run max':>8} {'dev/run':>7}"
    )
    print(f"{'':<15} " + " ".join(f"{HOW[p]:>13}" for p in PARTS))
    print(head)
    print("-" * len(head))
    for design, r in results:
        mean = r["mean_s"]
        print(
            f"{design:<7} {r['devices']:>7} "
            + " ".join(f"{mean.get(p, 0.0):>13.2f}" for p in PARTS)
            + f" {r['run_p50_s']:>8.1f} {r['run_max_s']:>8.1f} {r['devices'] / max(1, r['runs']):>7.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,50,100,200", help="devices per measured cycle (comma-separated)")
    parser.add_argument("--designs", default="before,after", help=f"which of {', '.join(DESIGNS)}")
    parser.add_argument("--stabilize-time", type=float, default=5.0)
    parser.add_argument(
        "--throughput-devices", type=int, default=100, help="devices of the sustained-rate cycle (0 skips it)"
    )
    parser.add_argument("--throughput-stabilize", type=float, default=30.0)
    parser.add_argument("--deployments", type=int, default=4)
    parser.add_argument(
        "--per-deployment", type=int, default=64, help="[schedule] max_concurrent_per_deployment of the simulated site"
    )
    parser.add_argument(
        "--resolution",
        default="x".join(map(str, RESOLUTION)),
        help="the simulated cameras' frame size WIDTHxHEIGHT (real PTZ cameras: 1920x1080)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--estimator-samples", type=int, default=10)
    parser.add_argument(
        "--executor-checks",
        type=int,
        default=1,
        help="deployment runs per executor through dagster.execute_job, each checking every device of its "
        "deployment (0 skips the comparison)",
    )
    parser.add_argument("--root", type=Path, help="keep the site's state here (default: a temp dir, removed)")
    args = parser.parse_args()

    try:
        width, height = (int(x) for x in args.resolution.lower().split("x"))
    except ValueError:
        parser.error(f"--resolution {args.resolution!r}: expected WIDTHxHEIGHT, e.g. 1920x1080")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown:
        parser.error(f"unknown design(s) {unknown}; known: {list(DESIGNS)}")
    total = max([*sizes, args.throughput_devices])
    timeout = max(60.0, 4 * args.throughput_stabilize)
    print(
        f"fleet cycle benchmark: up to {total} simulated devices ({width}x{height}, synthetic scenes) in "
        f"{args.deployments} deployments (max_concurrent_per_deployment {args.per_deployment}), "
        f"stabilize_time {args.stabilize_time:g} s, "
        f"{os.cpu_count()} CPUs, load average before start {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    warnings.filterwarnings("ignore", message=".*is currently in beta")
    retries = CommitRetries()
    iceberg_log = logging.getLogger("pyiceberg")
    iceberg_log.addHandler(retries)
    iceberg_log.propagate = False
    executors: dict = {}
    timings = Timings()
    timings.wrap(measure_module, "estimate_offsets")
    timings.wrap(ResultsTable, "write")
    # imported by name into the assets' module: wrapped there; keyed by the deployment (= its run)
    timings.wrap(assets_module, "capture_device", key_of=lambda config, deployment, *_: deployment.name)
    timings.wrap(assets_module, "measure_offsets", key_of=lambda store, outcome, *_: outcome.deployment_name)
    hours_back = iter(range(1, 10_000))

    def next_key() -> str:
        return current_time_key(datetime.now(UTC) - timedelta(hours=next(hours_back)))

    with BenchSite(
        total,
        args.deployments,
        args.seed,
        stabilize_time=args.stabilize_time,
        timeout=timeout,
        per_deployment=args.per_deployment,
        root=args.root,
        resolution=(width, height),
    ) as site:
        if site.broker.kind != "mosquitto":
            print(
                f"  MQTT broker: {site.broker.kind} in this process (no mosquitto on PATH): "
                "its CPU counts in the CPU figures below",
                flush=True,
            )
        clock = RunClock(site.platform)
        started = time.monotonic()
        cpu0 = cpu_seconds()
        refs = site.collect_references()
        failed_refs = [r.device_id for r in refs if not r.succeeded]
        print(
            f"reference scans: {len(refs)} devices in {time.monotonic() - started:.0f} s, "
            f"{cpu_seconds() - cpu0:.0f} CPU s, failed: {failed_refs or 'none'}",
            flush=True,
        )
        ids = site.device_ids
        # first-use costs (imports, OpenCV and matplotlib set-up) must not land on the 1-device cycle
        site.platform.run_check_cycle(next_key(), device_ids=ids[:1])
        per_site = ", ".join(f"{d['name']}={len(d['devices'])}" for d in site.spec["deployments"])
        print(f"  devices per deployment: {per_site}", flush=True)

        cycles: list[tuple[str, dict]] = []
        for size in sizes:
            for design in designs[:1] if size == 1 else designs:  # one device: nothing to schedule
                result = run_cycle(
                    site, clock, timings, retries, ids[:size], next_key(), use_design(design), args.stabilize_time
                )
                cycles.append(("-" if size == 1 else design, result))
                print(f"  {design} {size} devices: {result['wall_s']:.1f} s", flush=True)

        sustained: list[tuple[str, dict]] = []
        if args.throughput_devices:
            site.write_settings(args.throughput_stabilize, timeout)
            for design in designs:
                result = run_cycle(
                    site,
                    clock,
                    timings,
                    retries,
                    ids[: args.throughput_devices],
                    next_key(),
                    use_design(design),
                    args.throughput_stabilize,
                )
                sustained.append((design, result))
                print(
                    f"  {design} {args.throughput_devices} devices at {args.throughput_stabilize:g} s: "
                    f"{result['wall_s']:.1f} s",
                    flush=True,
                )
        if args.executor_checks:
            executors = executor_costs(site, args.executor_checks, next_key, args.stabilize_time, timeout)
        alone = estimator_alone(site.root, args.estimator_samples)
        load = os.getloadavg()

    if cycles:
        print_cycles(f"one cycle, stabilize_time {args.stabilize_time:g} s", cycles)
        print_breakdown("where a check's time goes (mean wall seconds per check)", cycles)
    if sustained:
        print_cycles(f"sustained rate, stabilize_time {args.throughput_stabilize:g} s", sustained)
        print_breakdown("where a check's time goes at that rate (mean wall seconds per check)", sustained)

    if executors:
        print(
            f"\nexecutor of a launched run (dagster.execute_job, one deployment's run at a time, stabilize_time "
            f"{args.stabilize_time:g} s; CPU per device-check = run CPU incl. step processes / the run's devices)"
        )
        head = f"{'executor':<13} {'runs':>4} {'checks':>6} {'succeeded':>9} {'wall s/run':>10} {'CPU s/check':>11}"
        print(head)
        print("-" * len(head))
        for name in ("in_process", "multiprocess"):
            e = executors[name]
            print(
                f"{name:<13} {e['runs']:>4} {e['checks']:>6} {e['succeeded']:>9} {e['wall_s_per_run']:>10.1f} "
                f"{e['cpu_s_per_check']:>11.2f}"
            )
        print(
            f"plus, per launched run (i.e. shared by its deployment's devices), the run worker's own start "
            f"(a fresh interpreter importing calmon_assets.definitions): {executors['process_start_cpu_s']:.2f} CPU s"
        )

    single = next((r for d, r in cycles if r["devices"] == 1), None)
    chosen = "after" if "after" in designs else designs[-1]
    largest = max((r for d, r in cycles if d == chosen), key=lambda r: r["devices"], default=None)
    print("\ngoals")
    if single and largest and largest["devices"] > 1:
        ratio = largest["wall_s"] / single["wall_s"]
        floor = largest["devices"] * alone / (os.cpu_count() or 1)
        print(
            f"  {largest['devices']}-device cycle / 1-device cycle ({chosen}): "
            f"{largest['wall_s']:.1f} / {single['wall_s']:.1f} s = {ratio:.1f}x (goal <= 3x)"
        )
        print(
            f"  CPU floor of that cycle: {largest['devices']} x {alone:.2f} CPU s estimator alone / "
            f"{os.cpu_count()} cores = {floor:.0f} s, i.e. {floor / single['wall_s']:.1f}x one device's cycle; "
            f"with the whole check's {largest['cpu_s_per_check']:.2f} CPU s: "
            f"{largest['devices'] * largest['cpu_s_per_check'] / (os.cpu_count() or 1):.0f} s"
        )
    for design, r in sustained:
        print(
            f"  {design}: {r['checks_per_hour']:.0f} device-checks/h at stabilize_time "
            f"{args.throughput_stabilize:g} s (goal >= 3000)"
        )
        own = r["mean_s"].get("estimation cpu (thread)", float("nan"))
        print(
            f"  {design}: {r['cpu_s_per_check']:.2f} CPU s per device-check (goal <= 1.0), all but the estimate "
            f"{r['cpu_s_per_check'] - own:.2f} (goal <= 0.4; less the cycle's own estimates, {own:.2f} thread CPU s "
            f"per check) or {r['cpu_s_per_check'] - alone:.2f} (less the estimator alone); rows {r['rows']} of "
            f"{r['devices']} devices ({r['distinct_rows']} distinct), failed runs {r['run_failures']} "
            "(goal: rows == devices, 0 failed)"
        )
    print(f"  estimator alone: {alone:.2f} CPU s per check (median of {args.estimator_samples}, serial)")
    print(f"  load average at the end (1 min): {load[0]:.2f} on {os.cpu_count()} CPUs")
    print(
        "\n"
        + json.dumps(
            {"cycles": cycles, "sustained": sustained, "executors": executors, "estimator_cpu_s": alone}, default=str
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
