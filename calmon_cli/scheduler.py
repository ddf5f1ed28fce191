"""Running many runs at once in threads of this process, the way the daemon's run queue would."""

from __future__ import annotations

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
