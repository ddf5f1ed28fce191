"""Running calmon's jobs from the CLI, the demo, benchmarks and tests: the same jobs the schedule
launches, executed in process against a persistent Dagster instance (so `calmon dev` shows them),
many at once in threads (calmon_cli.scheduler)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import dagster as dg

from calmon_assets.defs.alerts.sensors import SLACK_CURSOR_KEY, result_entries, send_pending_alerts
from calmon_assets.defs.checks.dead_runs import WORKER_TAG, fail_dead_check_runs, this_worker
from calmon_assets.defs.checks.failed_runs import record_failed_run, run_check_devices, run_failure_reason
from calmon_assets.defs.devices.sync import sync_devices
from calmon_assets.defs.partitions import check_partition_key
from calmon_assets.defs.runs import DEPLOYMENT_TAG, DEVICE_TAG, REALERT_TAG, REBASE_TAG, REGIME_TAG
from calmon_cli.instance import open_instance
from calmon_cli.job_origins import record_runs_as_code_location_runs
from calmon_cli.options import UsageError
from calmon_cli.scheduler import default_parallel_runs, import_what_runs_need, run_in_threads
from calmon_core.alerts import AlertPolicy
from calmon_core.config import load_config


@dataclass
class CheckRun:
    device_id: str
    partition: str
    run_id: str | None
    succeeded: bool  # the run, not the check: a failed check is a successful run with a failed row
    error: str | None = None
    outcome: str | None = None  # what the run came to: the check's status, or "stored" for a reference


def _outcomes(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """What a run came to per device: each check's status, or "stored" for a reference scan."""
    outcomes: dict[str, str] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        name = materialization.asset_key.to_user_string()
        if name == "reference_scan":
            outcomes[materialization.partition or ""] = "stored"
        elif name == "calibration_offsets":
            outcomes.update({device: str(status) for device, _, status in result_entries(materialization)})
    return outcomes


@dataclass(frozen=True)
class Job:
    name: str
    partition_key: str
    tags: dict[str, str]
    devices: list[str]  # what the run covers: its reference scan's device, its check's devices
    chosen: bool = False  # a check run of these devices only (run config), not all its deployment's


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
        self.instance = instance or open_instance(self.config.settings, home)
        record_runs_as_code_location_runs(self.instance)
        self.defs = build_definitions(config_dir, self.config.settings)
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
                raise UsageError(f"not in {self.config_dir}/devices.yaml: {', '.join(unknown)}")
            pairs = [(dep, dev) for dep, dev in pairs if dev.id in chosen]
        return pairs

    def _run_config(self, job: Job) -> dict:
        if not job.chosen:
            return self.run_config
        steps = (
            ("calibration_offsets",) if job.name == "reprocess_offsets" else ("query_capture", "calibration_offsets")
        )
        return {**self.run_config, "ops": {step: {"config": {"devices": job.devices}} for step in steps}}

    def _execute(self, job: Job) -> list[CheckRun]:
        """The run, as one CheckRun per device it covers."""
        try:
            result = self.defs.resolve_job_def(job.name).execute_in_process(
                partition_key=job.partition_key,
                instance=self.instance,
                tags={**job.tags, WORKER_TAG: this_worker()},  # so a later sweep can tell this process died
                raise_on_error=False,
                run_config=self._run_config(job),
            )
        except Exception as exc:  # a run that could not even start
            return [CheckRun(d, job.partition_key, None, False, f"{type(exc).__name__}: {exc}") for d in job.devices]
        if not result.success:
            reason = run_failure_reason(result.all_events)
            return [CheckRun(d, job.partition_key, result.run_id, False, reason) for d in job.devices]
        outcomes = _outcomes(result)
        return [CheckRun(d, job.partition_key, result.run_id, True, outcome=outcomes.get(d)) for d in job.devices]

    def _execute_many(self, jobs: list[Job], workers: int | None, progress, per_deployment: int) -> list[CheckRun]:
        """`workers` runs in all (None: default_parallel_runs for the configured stabilize_time), at
        most `per_deployment` of one deployment at once; progress per device."""
        settings = self.config.settings
        import_what_runs_need()
        total = sum(len(job.devices) for job in jobs)
        done: list[CheckRun] = []

        def each_device(_: int, __: int, runs: list[CheckRun]) -> None:
            for run in runs:
                done.append(run)
                if progress:
                    progress(len(done), total, run)

        runs = run_in_threads(
            jobs,
            self._execute,
            group_of=lambda job: job.tags.get(DEPLOYMENT_TAG, ""),
            workers=workers or default_parallel_runs(settings.capture.stabilize_time),
            per_group=per_deployment,
            progress=each_device,
        )
        return sorted((run for device_runs in runs for run in device_runs), key=lambda r: r.device_id)

    def collect_references(
        self,
        device_ids=None,
        workers: int | None = None,
        progress: Callable[[int, int, CheckRun], None] | None = None,
        *,
        rebase: bool = False,
        regime: str | None = None,
    ) -> list[CheckRun]:
        """rebase: a new gauge instead of registering to the stored reference; regime: store each
        scan as that regime's bank entry of the stored reference."""
        self.sync_devices()
        extra = {**({REBASE_TAG: "true"} if rebase else {}), **({REGIME_TAG: regime} if regime else {})}
        jobs = [
            Job("reference_scan_job", dev.id, {DEPLOYMENT_TAG: dep.name, DEVICE_TAG: dev.id, **extra}, [dev.id])
            for dep, dev in self.select_devices(device_ids)
        ]
        # the run queue's limit per deployment: one cluster's port-forwards
        return self._execute_many(jobs, workers, progress, self.config.settings.schedule.max_concurrent_per_deployment)

    def run_check_cycle(
        self,
        time_key: str,
        device_ids=None,
        workers: int | None = None,
        job_name: str = "calibration_check",
        realert: bool = False,
        progress: Callable[[int, int, CheckRun], None] | None = None,
    ) -> list[CheckRun]:
        """One check per device for one time partition: one run per deployment, deployments in
        parallel, each checking its devices [schedule] max_concurrent_per_deployment at once (they
        mostly wait). `device_ids`: only these devices (each deployment's run is told them)."""
        self.fail_dead_runs()
        self.sync_devices()
        tags_extra = {REALERT_TAG: "true"} if realert else {}
        by_deployment: dict[str, list[str]] = {}
        for dep, dev in self.select_devices(device_ids):
            by_deployment.setdefault(dep.name, []).append(dev.id)
        jobs = [
            Job(
                job_name,
                str(check_partition_key(name, time_key)),
                {DEPLOYMENT_TAG: name, **tags_extra},
                devices,
                chosen=bool(device_ids),
            )
            for name, devices in by_deployment.items()
        ]
        runs = self._execute_many(jobs, workers, progress, 1)
        for run_id in dict.fromkeys(run.run_id for run in runs if not run.succeeded and run.run_id):
            self._record_failed(next(run for run in runs if run.run_id == run_id))
        return runs

    def fail_dead_runs(self) -> list[CheckRun]:
        """Check runs whose worker died (an earlier `calmon monitor` killed mid-cycle): marked failed,
        given their failed row (and so their ❌) here, as record_failed_checks does in the daemon."""
        swept = []
        for dead in fail_dead_check_runs(self.instance, self.config):
            planned = run_check_devices(dead.run, self.config)
            partition = dead.run.tags.get("dagster/partition", "")
            runs = [
                CheckRun(d, partition, dead.run.run_id, False, dead.reason) for d in (planned[2] if planned else [])
            ]
            self._record_failed(runs[0] if runs else CheckRun("", partition, dead.run.run_id, False, dead.reason))
            swept += runs
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

    def refresh_fleet_health(self) -> dict:
        """The fleet_health_refresh job, run here (what the refresh_fleet_health sensor asks the daemon
        for after a cycle); the fleet_health materialization's metadata."""
        result = self.defs.resolve_job_def("fleet_health_refresh").execute_in_process(
            instance=self.instance, raise_on_error=False, run_config=self.run_config
        )
        if not result.success:
            raise RuntimeError(f"fleet_health refresh failed: {run_failure_reason(result.all_events)}")
        return dict(result.asset_materializations_for_node("fleet_health")[0].metadata)

    def send_alerts(self) -> list[str]:
        """Slack messages for results not alerted yet (the same cursor as the slack_alerts sensor).

        All of them: one pass takes a batch of results (200), and a cycle of a bigger fleet must
        not leave the rest to the next `calmon monitor`, an hour later. Stops when a pass moves the
        cursor no further (nothing new, or Slack unreachable: the sensor's next tick retries).
        """
        settings = self.config.settings
        policy = AlertPolicy(files_base_url=settings.slack.files_base_url, settings=settings.alerts)
        sent: list[str] = []
        while True:
            before = self._alerts_cursor()
            sent += send_pending_alerts(
                self.instance,
                self.resources["results_table"].get_client(),
                self.resources["slack"].get_client(),
                policy,
            )
            if self._alerts_cursor() == before:
                return sent

    def _alerts_cursor(self) -> str | None:
        return self.instance.run_storage.get_cursor_values({SLACK_CURSOR_KEY}).get(SLACK_CURSOR_KEY)
