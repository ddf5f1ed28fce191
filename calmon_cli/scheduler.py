"""Running many runs at once in threads of this process, the way the daemon's run queue would."""

from __future__ import annotations

import importlib
import math
import os
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")

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
    "dagster._core.launcher.sync_in_memory_run_launcher",  # build_input_context (a partition's stored value)
    "dagster._utils.hosted_user_process",
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


def run_in_threads(
    jobs: Sequence[Job],
    execute: Callable[[Job], Result],
    group_of: Callable[[Job], str],
    workers: int,
    per_group: int,
    progress: Callable[[int, int, Result], None] | None = None,
) -> list[Result]:
    """Execute every job in parallel threads, at most `workers` at once and `per_group` of one group
    (a deployment: its cluster's port-forwards) at once. Groups take turns for free slots, so one big
    site does not hold the others back. A check spends most of its time waiting for a still camera,
    so the number of workers, not the cores, bounds how many checks an hour one process makes."""
    cap = max(1, min(workers, len(jobs) or 1))
    queues: dict[str, deque] = {}
    for job in jobs:
        queues.setdefault(group_of(job), deque()).append(job)
    busy: Counter[str] = Counter()
    running: dict[Future, str] = {}
    results: list[Result] = []

    def start_what_fits(pool: ThreadPoolExecutor) -> None:
        started = True
        while started:
            started = False
            for group, queue in queues.items():
                if queue and busy[group] < per_group and len(running) < cap:
                    running[pool.submit(execute, queue.popleft())] = group
                    busy[group] += 1
                    started = True

    with ThreadPoolExecutor(max_workers=cap) as pool:
        start_what_fits(pool)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                busy[running.pop(future)] -= 1
                results.append(future.result())
                if progress:
                    progress(len(results), len(jobs), results[-1])
            start_what_fits(pool)
    return results
