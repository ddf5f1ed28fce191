"""The `calmon` command's contract for bad input: one clear message on stderr and exit 2, never a
traceback; every command reads its site the same way (--config DIR, else $CALMON_CONFIG_DIR)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from calmon_cli import __version__

REPO = Path(__file__).resolve().parents[1]


def calmon(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "CALMON_CONFIG_DIR"}
    environment.update(PYTHONPATH=str(REPO), DAGSTER_HOME=str(cwd / "dagster_home"), **env)
    return subprocess.run(
        [sys.executable, "-m", "calmon_cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=300,
    )


def bad_input(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.fixture
def sites(tmp_path: Path) -> Path:
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(REPO / "configs" / "devices.example.yaml", good / "devices.yaml")
    (good / "calibration_monitoring.ini").write_text(
        f"[results]\nwarehouse = {tmp_path}/wh\nsqlite_path = {tmp_path}/c.db\n"
    )
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / "devices.yaml").write_bytes(bytes(range(128, 256)) * 4)
    return tmp_path


def test_version(tmp_path):
    proc = calmon("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"calmon {__version__}"


def test_a_broken_or_missing_config_is_exit_2_for_every_command(sites):
    for command in ("monitor", "results", "collect-references", "validate-config"):
        bad_input(calmon(command, "--config", str(sites / "binary"), cwd=sites), "devices.yaml", "UTF-8")
        bad_input(calmon(command, "--config", str(sites / "nowhere"), cwd=sites), "devices.yaml: file not found")


def test_validate_config_reads_the_config_dir_the_way_every_command_does(sites):
    by_option = calmon("validate-config", "--config", str(sites / "good"), cwd=sites)
    by_env = calmon("validate-config", cwd=sites, CALMON_CONFIG_DIR=str(sites / "good"))
    assert by_option.returncode == by_env.returncode == 0, (by_option.stderr, by_env.stderr)
    assert "3 device(s)" in by_option.stdout and "3 device(s)" in by_env.stdout
    bad_input(calmon("validate-config", cwd=sites, CALMON_CONFIG_DIR=str(sites / "binary")), "UTF-8")


def test_an_unknown_device_or_time_is_exit_2(sites):
    bad_input(calmon("monitor", "--config", str(sites / "good"), "--device", "nope", cwd=sites), "nope", "devices.yaml")
    bad_input(calmon("results", "--config", str(sites / "good"), "--since", "yesterday", cwd=sites), "--since", "ISO")
