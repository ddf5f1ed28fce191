"""Running calmon's jobs from the CLI, the demo, benchmarks and tests: the same jobs the schedule
launches, executed in process against a persistent Dagster instance (so `calmon dev` shows them)."""

from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from calmon_assets.dead_runs import WORKER_TAG, fail_dead_runs, stale_after_seconds, this_worker
from calmon_assets.devices import sync_devices
from calmon_assets.jobs import DEPLOYMENT_TAG, DEVICE_TAG, REALERT_TAG
from calmon_assets.partitions import check_partition_key
from calmon_assets.sensors import (
    SLACK_CURSOR_KEY,
    record_failed_run,
    run_failure_reason,
    send_pending_alerts,
)
from calmon_core.config import SETTINGS_FILE, CalmonConfig, load_config, load_settings

DEFAULT_DAGSTER_HOME = ".calmon/dagster_home"
# What one check asks of this process (benchmarks/fleet_cycle.py, 640x360 frames on 2 cores): about
# 1.2-1.5 CPU seconds (Dagster's run ~0.5, estimation ~0.5, plots and the results table the rest),
# rounded up for bigger frames and slower cores; and a run for stabilize_time plus a few seconds.
CHECK_CPU_SECONDS = 2.0
CHECK_EXTRA_SECONDS = 4.0


def default_parallel_runs(stabilize_time: float, cpus: int | None = None) -> int:
    """Runs at once when the caller names no number: enough that the cores stay busy while the
    other checks wait for still cameras, and no more. Every run beyond that only queues on the one
    GIL, and 200 runs started together starved their own captures (MQTT connections timed out)."""
    cpus = cpus or os.cpu_count() or 1
    return max(cpus, math.ceil(cpus * (stabilize_time + CHECK_EXTRA_SECONDS) / CHECK_CPU_SECONDS))


def dagster_yaml(max_concurrent_per_deployment: int) -> str:
    """Instance settings: queued runs, at most N at once per deployment (one cluster's port-forwards)."""
    return (
        "run_coordinator:\n"
        "  module: dagster._core.run_coordinator\n"
        "  class: QueuedRunCoordinator\n"
        "  config:\n"
        "    max_concurrent_runs: 32\n"
        "    tag_concurrency_limits:\n"
        f'      - key: "{DEPLOYMENT_TAG}"\n'
        "        value:\n"
        "          applyLimitPerUniqueValue: true\n"
        f"        limit: {max_concurrent_per_deployment}\n"
        # a run stuck STARTING (its worker never came up) is failed; slots of ended runs are freed.
        # Runs STARTED by a worker that died are calmon's fail_dead_check_runs sensor's: Dagster cannot
        # tell an in-process run's worker is gone, and its timeout ends runs CANCELED, not failed.
        "run_monitoring:\n"
        "  enabled: true\n"
        "  start_timeout_seconds: 180\n"
        "  poll_interval_seconds: 60\n"
        "  free_slots_after_run_end_seconds: 300\n"
        "telemetry:\n"
        "  enabled: false\n"
    )


def prepare_dagster_home(config: CalmonConfig, home: str | None = None) -> Path:
    """Use $DAGSTER_HOME, else .calmon/dagster_home, writing its dagster.yaml when missing."""
    path = Path(home or os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    path.mkdir(parents=True, exist_ok=True)
    settings_file = path / "dagster.yaml"
    if not settings_file.exists():
        settings_file.write_text(dagster_yaml(config.settings.schedule.max_concurrent_per_deployment))
    os.environ["DAGSTER_HOME"] = str(path)
    return path


# Runs executed in process, several threads at once, share the process's stdout/stderr: Dagster's
# compute-log capture swaps those file descriptors per step and would send the CLI's own output
# (and other runs' output) into whichever step's log file was last opened.
_NO_COMPUTE_LOG_CAPTURE = {
    "compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"}
}


def open_instance(config: CalmonConfig, home: str | None = None) -> dg.DagsterInstance:
    """The instance for runs executed in process, in parallel threads (CLI, demo, benchmarks).

    Same storage as `calmon dev` and the daemon (so the UI shows these runs), minus compute-log
    capture; and Dagster's per-run logging set-up is done once here: with any instance setting it
    calls logging.config.dictConfig at every run start, which deadlocks against runs logging in
    other threads.
    """
    from dagster._core.instance.ref import InstanceRef

    path = prepare_dagster_home(config, home)
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(path), overrides=_NO_COMPUTE_LOG_CAPTURE))
    handlers = instance.get_yaml_python_handlers()
    instance.get_yaml_python_handlers = lambda: handlers  # type: ignore[method-assign]
    return instance


# What a check run imports on first use, imported before runs start in parallel threads: two threads
# importing one module at once can see it half initialised ("partially initialized module
# 'sqlalchemy.orm.exc'", a false ❌ once in ~15 cycles). tests/test_thread_imports.py runs a real
# cycle in a fresh interpreter and fails on any module still first imported off the main thread.
RUN_IMPORTS = (
    "calmon_core.colmap_db",
    "calmon_core.diagnostics",
    "calmon_core.reference_map",
    "pycolmap",
    "pycolmap.utils",
    "pyceres",
    "encodings.cp437",  # zipfile's names in numpy's .npz
    "sqlalchemy.orm",
    "pyiceberg.catalog.sql",
    "pyiceberg.table.update.validate",
    "pyiceberg.avro.decoder_fast",
    "pyarrow.acero",
    "dagster._core.execution.execute_in_process",
    "dagster._core.executor.in_process",
    "dagster._core.execution.plan.active",
    "dagster._core.instance.runs.run_domain",
    "dagster._core.system_config.composite_descent",
    "dagster._core.definitions.repository_definition.repository_data_builder",
    "dateutil.rrule",
    "netrc",
    "xml.parsers.expat",
    "mpl_toolkits.mplot3d",
    "fontTools.agl",
    "fontTools.misc.loggingTools",
    "matplotlib.backends.backend_agg",
    "pyiceberg_core",
)


def import_what_runs_need() -> None:
    import importlib

    import matplotlib

    matplotlib.use("Agg")  # as calmon_core.plots does
    import matplotlib.pyplot  # noqa: F401
    import PIL.Image

    PIL.Image.init()  # its format plugins, loaded on the first save otherwise
    for name in RUN_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # a module another version of a library no longer has: nothing to race on


@dataclass
class CheckRun:
    device_id: str
    partition: str
    run_id: str | None
    succeeded: bool  # the run, not the check: a failed check is a successful run with a failed row
    error: str | None = None


class Platform:
    """The code location for one config folder plus its instance."""

    def __init__(
        self,
        config_dir: str,
        instance: dg.DagsterInstance | None = None,
        home: str | None = None,
        console_log_level: str = "WARNING",
    ):
        from calmon_assets.definitions import build_definitions

        self.config_dir = config_dir
        self.config = load_config(config_dir)
        self.instance = instance or open_instance(self.config, home)
        self.defs = build_definitions(config_dir)
        self.resources = self.defs.resources or {}
        # Dagster's console logger prints every event at DEBUG; the event log (and the UI) keep them
        # all, the terminal shows warnings and what the CLI prints itself.
        self.run_config = {"loggers": {"console": {"config": {"log_level": console_log_level}}}}

    def sync_devices(self):
        return sync_devices(self.instance, self.config.fleet)

    def select_devices(self, device_ids: Iterable[str] | None, enabled_only: bool = True):
        chosen = list(device_ids or [])
        pairs = self.config.fleet.devices(enabled_only=enabled_only and not chosen)
        if chosen:
            known = {d.id for _, d in pairs}
            unknown = [d for d in chosen if d not in known]
            if unknown:
                raise KeyError(f"not in {self.config_dir}/devices.yaml: {', '.join(unknown)}")
            pairs = [(dep, dev) for dep, dev in pairs if dev.id in chosen]
        return pairs

    def _execute(self, job_name: str, partition_key: str, tags: dict[str, str]) -> CheckRun:
        job = self.defs.resolve_job_def(job_name)
        device_id = tags.get(DEVICE_TAG, "")
        try:
            result = job.execute_in_process(
                partition_key=partition_key,
                instance=self.instance,
                tags={**tags, WORKER_TAG: this_worker()},  # so a later sweep can tell this process died
                raise_on_error=False,
                run_config=self.run_config,
            )
        except Exception as exc:  # a run that could not even start
            return CheckRun(device_id, partition_key, None, False, f"{type(exc).__name__}: {exc}")
        error = None if result.success else run_failure_reason(result.all_events)
        return CheckRun(device_id, partition_key, result.run_id, result.success, error)

    def collect_references(
        self, device_ids=None, workers: int | None = None, progress: Callable[[int, int, CheckRun], None] | None = None
    ) -> list[CheckRun]:
        self.sync_devices()
        jobs = [
            ("reference_scan_job", dev.id, {DEPLOYMENT_TAG: dep.name, DEVICE_TAG: dev.id})
            for dep, dev in self.select_devices(device_ids)
        ]
        return self._execute_many(jobs, workers, progress)

    def _execute_many(self, jobs, workers: int | None, progress) -> list[CheckRun]:
        """Runs in parallel threads: a check spends most of its time waiting for a still camera, so
        a fixed small pool (it was 8) capped a fleet at 8 x 3600 / (stabilize_time + ~8 s) checks an
        hour, whatever the machine could do.

        Limits: `workers` runs in all (None: default_parallel_runs for the configured
        stabilize_time), and per deployment the [schedule] max_concurrent_per_deployment the
        daemon's run queue applies too, so a cluster sees the same number of port-forwards whichever
        way its checks are run. Deployments take turns for free slots, so one big site does not
        hold the others back.
        """
        settings = load_settings(Path(self.config_dir) / SETTINGS_FILE)  # as the runs will read it
        limit = settings.schedule.max_concurrent_per_deployment
        cap = max(1, min(workers or default_parallel_runs(settings.capture.stabilize_time), len(jobs) or 1))
        queues: dict[str, deque] = {}
        for job in jobs:
            queues.setdefault(job[2].get(DEPLOYMENT_TAG, ""), deque()).append(job)
        import_what_runs_need()
        busy: Counter[str] = Counter()
        running: dict[Future, str] = {}
        runs: list[CheckRun] = []

        def start_what_fits(pool: ThreadPoolExecutor) -> None:
            started = True
            while started:
                started = False
                for deployment, queue in queues.items():
                    if queue and busy[deployment] < limit and len(running) < cap:
                        running[pool.submit(self._execute, *queue.popleft())] = deployment
                        busy[deployment] += 1
                        started = True

        with ThreadPoolExecutor(max_workers=cap) as pool:
            start_what_fits(pool)
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    busy[running.pop(future)] -= 1
                    runs.append(future.result())
                    if progress:
                        progress(len(runs), len(jobs), runs[-1])
                start_what_fits(pool)
        return sorted(runs, key=lambda r: r.device_id)

    def run_check_cycle(
        self,
        time_key: str,
        device_ids=None,
        workers: int | None = None,
        job_name: str = "calibration_check",
        realert: bool = False,
        progress: Callable[[int, int, CheckRun], None] | None = None,
    ) -> list[CheckRun]:
        """One check per device for one time partition, devices in parallel (they mostly wait)."""
        self.fail_dead_runs()
        self.sync_devices()
        tags_extra = {REALERT_TAG: "true"} if realert else {}
        jobs = [
            (
                job_name,
                str(check_partition_key(dev.id, time_key)),
                {DEPLOYMENT_TAG: dep.name, DEVICE_TAG: dev.id, **tags_extra},
            )
            for dep, dev in self.select_devices(device_ids)
        ]
        runs = self._execute_many(jobs, workers, progress)
        for run in runs:
            if not run.succeeded and run.run_id:
                self._record_failed(run)
        return runs

    def fail_dead_runs(self) -> list[CheckRun]:
        """Check runs whose worker died (an earlier `calmon monitor` killed mid-cycle): marked failed,
        given their failed row (and so their ❌) here, as record_failed_checks does in the daemon."""
        most_stops = max((len(dev.active_ptz_stops) for _, dev in self.config.fleet.devices()), default=0)
        stale_after = stale_after_seconds(self.config.settings, most_stops)
        swept = []
        for dead in fail_dead_runs(self.instance, ["calibration_check"], stale_after):
            run = CheckRun(
                dead.run.tags.get(DEVICE_TAG, ""),
                dead.run.tags.get("dagster/partition", ""),
                dead.run.run_id,
                False,
                dead.reason,
            )
            self._record_failed(run)
            swept.append(run)
        return swept

    def _record_failed(self, run: CheckRun) -> None:
        """What the run-failure sensor does in the daemon, done here for in-process runs."""
        dagster_run = self.instance.get_run_by_id(run.run_id) if run.run_id else None
        if dagster_run is not None:
            record_failed_run(
                self.instance,
                dagster_run,
                run.error or "run failed",
                self.config,
                self.resources["results_table"].get_client(),
            )

    def maintain_results_table(self) -> dict:
        """The results_table_maintenance job, run here (what its schedule does in the daemon)."""
        result = self.defs.resolve_job_def("results_table_maintenance").execute_in_process(
            instance=self.instance, raise_on_error=False, run_config=self.run_config
        )
        if not result.success:
            raise RuntimeError(f"results table upkeep failed: {run_failure_reason(result.all_events)}")
        return result.output_for_node("maintain_results_table")

    def send_alerts(self) -> list[str]:
        """Slack messages for results not alerted yet (the same cursor as the slack_alerts sensor).

        All of them: one pass takes a batch of results (200), and a cycle of a bigger fleet must
        not leave the rest to the next `calmon monitor`, an hour later. Stops when a pass moves the
        cursor no further (nothing new, or Slack unreachable: the sensor's next tick retries).
        """
        sent: list[str] = []
        while True:
            before = self._alerts_cursor()
            sent += send_pending_alerts(
                self.instance,
                self.resources["results_table"].get_client(),
                self.resources["slack"].get_client(),
                files_base_url=self.config.settings.slack.files_base_url,
            )
            if self._alerts_cursor() == before:
                return sent

    def _alerts_cursor(self) -> str | None:
        return self.instance.run_storage.get_cursor_values({SLACK_CURSOR_KEY}).get(SLACK_CURSOR_KEY)


def progress_printer(label: str, stream=sys.stderr) -> Callable[[int, int, CheckRun], None]:
    started = time.monotonic()

    def show(done: int, total: int, run: CheckRun) -> None:
        width = 24
        filled = int(width * done / max(total, 1))
        mark = "ok" if run.succeeded else f"FAILED: {run.error}"
        stream.write(
            f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
            f"{time.monotonic() - started:5.0f}s  {run.device_id}: {mark}\n"
        )
        stream.flush()

    return show


def format_results_table(rows) -> str:
    headers = ["deployment", "device", "check", "status", "yaw°", "pitch°", "roll°", "±max°", "inliers", "note"]

    def num(v):
        return "" if v is None else f"{v:+.3f}"

    lines = []
    for r in rows:
        sig = [s for s in (r.yaw_uncertainty, r.pitch_uncertainty, r.roll_uncertainty) if s is not None]
        note = (r.failure_log or "")[:70]
        lines.append(
            [
                r.deployment_name,
                r.device_id,
                r.check_partition,
                str(r.status.value if hasattr(r.status, "value") else r.status),
                num(r.yaw_offset),
                num(r.pitch_offset),
                num(r.roll_offset),
                f"{max(sig):.3f}" if sig else "",
                "" if r.inliers is None else str(r.inliers),
                note,
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)
