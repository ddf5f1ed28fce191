"""The Dagster instance the CLI's runs use: the same storage as `calmon dev` and the daemon."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from calmon_assets.defs.runs import DEPLOYMENT_TAG
from calmon_core.config import Settings

DEFAULT_DAGSTER_HOME = ".calmon/dagster_home"


def dagster_yaml(max_concurrent_per_deployment: int) -> str:
    """Instance settings: queued runs, at most N at once per deployment (one cluster's port-forwards)."""
    return (
        "concurrency:\n"
        "  runs:\n"
        "    max_concurrent_runs: 32\n"
        "    tag_concurrency_limits:\n"
        f'      - key: "{DEPLOYMENT_TAG}"\n'
        "        value:\n"
        "          applyLimitPerUniqueValue: true\n"
        f"        limit: {max_concurrent_per_deployment}\n"
        "telemetry:\n"
        "  enabled: false\n"
    )


def prepare_dagster_home(settings: Settings, home: str | None = None) -> Path:
    """Use $DAGSTER_HOME, else .calmon/dagster_home, writing its dagster.yaml when missing."""
    path = Path(home or os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    path.mkdir(parents=True, exist_ok=True)
    settings_file = path / "dagster.yaml"
    if not settings_file.exists():
        settings_file.write_text(dagster_yaml(settings.schedule.max_concurrent_per_deployment))
    os.environ["DAGSTER_HOME"] = str(path)
    return path


# Runs executed in process, several threads at once, share the process's stdout/stderr: Dagster's
# compute-log capture swaps those file descriptors per step and would send the CLI's own output
# (and other runs' output) into whichever step's log file was last opened.
_NO_COMPUTE_LOG_CAPTURE = {
    "compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"}
}


def open_instance(settings: Settings, home: str | None = None) -> dg.DagsterInstance:
    """The instance for runs executed in process, in parallel threads (CLI, demo, benchmarks).

    Same storage as `calmon dev` and the daemon (so the UI shows these runs), minus compute-log
    capture; and Dagster's per-run logging set-up is done once here: with any instance setting it
    calls logging.config.dictConfig at every run start, which deadlocks against runs logging in
    other threads.
    """
    from dagster._core.instance.ref import InstanceRef

    path = prepare_dagster_home(settings, home)
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(path), overrides=_NO_COMPUTE_LOG_CAPTURE))
    handlers = instance.get_yaml_python_handlers()
    instance.get_yaml_python_handlers = lambda: handlers  # type: ignore[method-assign]
    return instance
