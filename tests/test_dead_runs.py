"""A check cycle killed mid-run (SIGKILL) ends as failed rows and ❌s, through the cron path (the
next `calmon monitor`) and the daemon path (the fail_dead_check_runs sensor, then record_failed_checks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from calmon_assets.defs.partitions import current_time_key
from calmon_core.models import CheckStatus
from tests.sim_site import device, start_site, stop_site

REPO = Path(__file__).resolve().parent.parent
NOW = datetime.now(UTC)
HOUR_KILLED_CRON, HOUR_KILLED_DAEMON, HOUR_NEXT = (current_time_key(NOW - timedelta(hours=h)) for h in (40, 39, 38))
STALLED, OTHER = "cam-stall", "cam-next"


@pytest.fixture(scope="module")
def site(tmp_path_factory, shared_broker):
    monkeypatch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("dead-runs")
    deployments = [{"name": "yard", "devices": [device(STALLED, 21), device(OTHER, 22)]}]
    s = start_site(root, shared_broker, deployments, None, monkeypatch, timeout=60)
    s.fleet.cameras[STALLED].set_faults(never_settle=True)  # its capture waits: the run is under way
    yield s
    stop_site(s)
    monkeypatch.undo()


def started_runs(instance: dg.DagsterInstance, time_key: str) -> list[dg.DagsterRun]:
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name="calibration_check", statuses=[dg.DagsterRunStatus.STARTED])
    )
    return [r for r in runs if r.tags.get("dagster/partition/time") == time_key]


def kill_mid_run(site, command: list[str], time_key: str, env: dict | None = None) -> dg.DagsterRun:
    """Run `command` (a check of STALLED at time_key), SIGKILL it once its run has recorded its
    worker and waits in the capture; returns the run it left behind."""
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    instance = site.platform().instance
    try:
        deadline = time.monotonic() + 180
        while not [r for r in started_runs(instance, time_key) if "calmon/worker" in r.tags]:
            assert proc.poll() is None, f"{command[2:4]} ended before its check run was under way"
            assert time.monotonic() < deadline, "no run started"
            time.sleep(0.2)
        time.sleep(1.0)  # into the capture
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    (run,) = started_runs(instance, time_key)
    return run


def kill_monitor_mid_cycle(site, time_key: str) -> dg.DagsterRun:
    """`calmon monitor` in its own process, SIGKILLed while its check run is under way."""
    command = [sys.executable, "-m", "calmon_cli", "monitor", "--config", str(site.config_dir)]
    command += ["--device", STALLED, "--partition", time_key, "--no-alerts", "--no-maintenance"]
    return kill_mid_run(site, command, time_key)


def kill_job_execute_mid_run(site, time_key: str) -> dg.DagsterRun:
    """The check job of STALLED's deployment run by Dagster's own run worker in process (`dagster
    job execute`, as the daemon's run launcher runs `dagster api execute_run`), SIGKILLed while
    STALLED's capture waits."""
    from calmon_assets.defs.partitions import check_partition_key

    key = check_partition_key("yard", time_key)
    tags = {"dagster/partition": str(key), "dagster/partition/deployment": "yard", "dagster/partition/time": time_key}
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "calmon_assets.definitions"]
    command += ["-j", "calibration_check", "--tags", json.dumps(tags)]
    return kill_mid_run(site, command, time_key, env={**os.environ, "CALMON_CONFIG_DIR": str(site.config_dir)})


def row_of(platform, device_id: str, time_key: str):
    return platform.resources["results_table"].get_client().read(device_id, time_key)


def test_a_killed_monitor_is_swept_by_the_next_monitor(site):
    killed = kill_monitor_mid_cycle(site, HOUR_KILLED_CRON)
    platform = site.platform()
    assert row_of(platform, STALLED, HOUR_KILLED_CRON) is None  # the silence the sweep ends
    platform.run_check_cycle(HOUR_NEXT, device_ids=[OTHER])  # the next cron `calmon monitor`
    assert platform.instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    row = row_of(platform, STALLED, HOUR_KILLED_CRON)
    assert row is not None and row.status == CheckStatus.failed and row.run_id == killed.run_id
    assert "worker process" in row.failure_log and "is gone" in row.failure_log
    texts = platform.send_alerts()
    (text,) = [t for t in texts if STALLED in t and HOUR_KILLED_CRON in t]
    assert text.startswith("❌") and "worker process" in text


def test_a_killed_run_is_failed_by_the_daemon_sensors(site):
    from calmon_assets.defs.checks.dead_runs import fail_dead_check_runs_sensor
    from calmon_assets.defs.checks.failed_runs import record_failed_checks_sensor

    killed = kill_monitor_mid_cycle(site, HOUR_KILLED_DAEMON)
    platform = site.platform()
    with dg.build_sensor_context(instance=platform.instance, resources=platform.resources) as context:
        outcome = fail_dead_check_runs_sensor(context)
    assert "1 dead check run(s) marked failed" in str(outcome)
    failed = platform.instance.get_run_by_id(killed.run_id)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    (failure,) = platform.instance.all_logs(killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    with dg.build_run_status_sensor_context(
        sensor_name="record_failed_checks",
        dagster_event=failure.dagster_event,
        dagster_instance=platform.instance,
        dagster_run=failed,
        resources=platform.resources,
    ) as context:
        record_failed_checks_sensor(context.for_run_failure())
    row = row_of(platform, STALLED, HOUR_KILLED_DAEMON)
    assert row is not None and row.status == CheckStatus.failed and "worker process" in row.failure_log
    texts = platform.send_alerts()
    assert [t for t in texts if STALLED in t and HOUR_KILLED_DAEMON in t and t.startswith("❌")]


def test_a_run_under_way_too_long_is_failed_even_if_its_worker_cannot_be_checked(site):
    from calmon_assets.defs.checks.dead_runs import fail_dead_runs

    killed = kill_monitor_mid_cycle(site, current_time_key(NOW - timedelta(hours=37)))
    instance = site.platform().instance
    # a worker on another machine: only its age can tell
    instance.add_run_tags(killed.run_id, {"calmon/worker": "another-host:1:1"})
    assert fail_dead_runs(instance, ["calibration_check"], stale_after=3600) == []
    (dead,) = fail_dead_runs(instance, ["calibration_check"], stale_after=3600, now=time.time() + 3601)
    assert dead.run.run_id == killed.run_id and "longer than any check takes" in dead.reason


def test_a_run_of_dagsters_own_worker_is_failed_as_soon_as_its_process_is_gone(site):
    """Not only runs started by calmon monitor: the run records its own worker process."""
    from calmon_assets.defs.checks.dead_runs import fail_dead_check_runs_sensor

    time_key = current_time_key(NOW - timedelta(hours=36))
    killed = kill_job_execute_mid_run(site, time_key)
    platform = site.platform()
    with dg.build_sensor_context(instance=platform.instance, resources=platform.resources) as context:
        outcome = fail_dead_check_runs_sensor(context)
    assert "1 dead check run(s) marked failed" in str(outcome)
    (failure,) = platform.instance.all_logs(killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert "worker process" in failure.dagster_event.message and "is gone" in failure.dagster_event.message
