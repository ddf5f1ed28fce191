"""Runs whose worker died: a check run killed mid-cycle (SIGKILL, OOM, a lost machine) stays STARTED
forever, writes no row and sends nothing, and holds its deployment's run slot. calmon ends it as a
failed run, so it gets its failed row and its ❌ like any other failure: at once when the process
that ran it is known to be gone (in-process runs carry their worker's host and pid), and in any case
once it has been under way longer than any check takes (a worker on another host, or hung).

Swept by `calmon monitor` before each cycle (the cron path) and by the fail_dead_check_runs sensor
here (the daemon path); Dagster's own run monitoring cannot tell an in-process run's worker is dead.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from calmon_assets.defs.checks.jobs import calibration_check_job
from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.config import CalmonConfig, Settings
from calmon_core.extraction import default_timeout

WORKER_TAG = "calmon/worker"  # host:pid:start of the process executing a run in process
# Statuses of a run that is under way; QUEUED runs wait for a slot and are left alone.
_UNDER_WAY = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
MIN_STALE_SECONDS = 15 * 60


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not taken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def this_worker() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def worker_gone(worker: str) -> bool | None:
    """True when the worker process is known to be gone, False when alive, None when it cannot be
    told (another host)."""
    host, _, rest = worker.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # someone else's process holds the pid: ours is gone if the start time differs
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # alive, on a system without /proc
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0] == "Z" or bool(started and fields[19] != started)


def stale_after_seconds(settings: Settings, most_stops: int = 0) -> float:
    """How long a check run may be under way before it is taken for dead when its worker cannot be
    checked: several times the capture timeout, per pose, and never under 15 minutes."""
    capture = settings.capture
    timeout = capture.timeout or default_timeout(capture.stabilize_time)
    return max(MIN_STALE_SECONDS, 4.0 * timeout * (1 + most_stops))


@dataclass
class DeadRun:
    run: dg.DagsterRun
    reason: str


def fail_dead_runs(
    instance: dg.DagsterInstance,
    job_names: list[str],
    stale_after: float,
    now: float | None = None,
) -> list[DeadRun]:
    """Mark runs of these jobs whose worker died as failed (reported as Dagster's run failure, so the
    run-failure sensor reacts as to any failure); returns them with the reason given."""
    now = time.time() if now is None else now
    dead: list[DeadRun] = []
    for job_name in job_names:
        records = instance.get_run_records(filters=dg.RunsFilter(job_name=job_name, statuses=_UNDER_WAY))
        for record in records:
            run = record.dagster_run
            reason = _why_dead(run, record, stale_after, now)
            if reason is None:
                continue
            current = instance.get_run_by_id(run.run_id)
            if current is None or current.is_finished:
                continue  # it ended while we looked
            instance.report_run_failed(current, reason)
            dead.append(DeadRun(current, reason))
    return dead


def _why_dead(run: dg.DagsterRun, record, stale_after: float, now: float) -> str | None:
    worker = run.tags.get(WORKER_TAG)
    if worker and worker_gone(worker):
        host, pid = worker.split(":")[:2]
        return f"its worker process (pid {pid} on {host}) is gone: killed or crashed mid-run"
    started = record.start_time or record.create_timestamp.timestamp()
    if now - started > stale_after:
        return (
            f"still {run.status.value} after {now - started:.0f} s, longer than any check takes "
            f"({stale_after:.0f} s): its worker died"
        )
    return None


def fail_dead_check_runs(instance: dg.DagsterInstance, config: CalmonConfig) -> list[DeadRun]:
    """fail_dead_runs for the check job, with the staleness the fleet's longest check allows."""
    most_stops = max((len(dev.active_ptz_stops) for _, dev in config.fleet.devices()), default=0)
    return fail_dead_runs(instance, [calibration_check_job.name], stale_after_seconds(config.settings, most_stops))


@dg.sensor(
    name="fail_dead_check_runs",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A check run whose worker died (killed, crashed, its machine lost) is marked failed, "
    "so record_failed_checks writes its row and slack_alerts its ❌, and its deployment's slot frees.",
)
def fail_dead_check_runs_sensor(context: dg.SensorEvaluationContext, site: SiteConfigResource):
    dead = fail_dead_check_runs(context.instance, site.load())
    for item in dead:
        context.log.warning(f"run {item.run.run_id} marked failed: {item.reason}")
    return dg.SkipReason(f"{len(dead)} dead check run(s) marked failed" if dead else "no dead check runs")
