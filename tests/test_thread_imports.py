"""Runs in parallel threads must not import modules for the first time (a half-initialised module
seen by another thread failed a step: "partially initialized module 'sqlalchemy.orm.exc'")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_a_real_cycle_imports_nothing_off_the_main_thread():
    """A fresh interpreter (nothing imported yet), reference scans and a check cycle of two devices
    in parallel: every module their threads need was imported before the threads started."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "thread_imports_probe.py"),
            os.environ.get("CALMON_TEST_BROKER", "mosquitto"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_many_threads_importing_at_once_after_the_preload_all_succeed():
    """The stress form: a fresh interpreter, the preload, then 16 threads at once opening the results
    table (pyiceberg's SQL catalog, SQLAlchemy's ORM) and reading and writing it; 5 rounds."""
    script = """
import sys, tempfile, threading
from calmon_cli.scheduler import import_what_runs_need
import_what_runs_need()
from calmon_core.config import ResultsSettings
from resources.results_table import ResultsTable
errors = []
def one(root, i):
    try:
        table = ResultsTable(ResultsSettings(warehouse=f"{root}/w", sqlite_path=f"{root}/c.db"))
        table.latest_per_device()
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
with tempfile.TemporaryDirectory() as root:
    ResultsTable(ResultsSettings(warehouse=f"{root}/w", sqlite_path=f"{root}/c.db")).ensure_table()
    threads = [threading.Thread(target=one, args=(root, i)) for i in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
print("\\n".join(errors) or "ok")
"""
    for _ in range(5):
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip().splitlines()[-1] == "ok", proc.stdout
