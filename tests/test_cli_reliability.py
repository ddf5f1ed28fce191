"""The CLI on a lost catalog, a broken data file, a fleet with nothing to check, mismatched scans:
a clear message and the right exit code, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from calmon_core.config import load_config, local_site_settings
from calmon_core.features import FEATURES_DIR
from resources.results_table import ResultsTable
from tests.test_estimate_identity import city, scans  # noqa: F401 - fixtures
from tests.test_results_table import check

REPO = Path(__file__).resolve().parent.parent
DEVICES = """deployments:
  - name: harbor
    devices:
      - id: cam-1
        enabled: {enabled}
        camera: {{base_url: "http://127.0.0.1:9"}}
        intrinsics: {{width: 640, height: 360, hfov_by_zoom: {{1.0: 60.0}}}}
        reference_grid: {{yaws: [0], pitches: [0]}}
"""


def calmon(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    return subprocess.run(
        [sys.executable, "-m", "calmon_cli", *args], capture_output=True, text=True, cwd=REPO, env=env
    )


def site_config(root: Path, enabled: bool = True) -> Path:
    config = root / "configs"
    config.mkdir(parents=True, exist_ok=True)
    (config / "calibration_monitoring.ini").write_text(local_site_settings(root))
    (config / "devices.yaml").write_text(DEVICES.format(enabled=str(enabled).lower()))
    return config


def filled_table(config: Path) -> ResultsTable:
    settings = load_config(config).settings
    table = ResultsTable(settings.results, settings.aws)
    table.write([check("cam-1", 0), check("cam-2", 30)])
    return table


def test_monitor_with_an_empty_devices_yaml_says_so_and_fails(tmp_path):
    config = site_config(tmp_path)
    (config / "devices.yaml").write_text("")
    proc = calmon("monitor", "--config", str(config), home=tmp_path)
    assert proc.returncode == 2 and "no devices" in proc.stderr and "Traceback" not in proc.stderr


def test_monitor_with_every_device_disabled_says_so_and_fails(tmp_path):
    config = site_config(tmp_path, enabled=False)
    proc = calmon("monitor", "--config", str(config), home=tmp_path)
    assert proc.returncode == 2 and "no devices to check" in proc.stderr and "Traceback" not in proc.stderr
    # the one line is all the user reads: loading the definitions printed Dagster's preview notices
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_results_on_a_lost_catalog_is_a_loud_error_then_recovers_on_request(tmp_path):
    config = site_config(tmp_path)
    filled_table(config)
    (tmp_path / "catalog.db").write_bytes(b"")
    proc = calmon("results", "--config", str(config), home=tmp_path)
    assert proc.returncode == 2 and str(tmp_path / "catalog.db") in proc.stderr and "Traceback" not in proc.stderr
    assert "--recover-catalog" in proc.stderr
    proc = calmon("results", "--config", str(config), "--recover-catalog", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cam-1" in proc.stdout and "cam-2" in proc.stdout


def test_results_with_a_missing_data_file_shows_the_rest_and_names_it(tmp_path):
    config = site_config(tmp_path)
    table = filled_table(config)
    files = table.table().inspect.files()["file_path"].to_pylist()
    lost = next(f for f in files if "2026-11-20" in f)
    Path(lost.removeprefix("file://")).unlink()
    # the fleet's latest rows come from the current-state table, which still holds cam-1's newest row
    latest = calmon("results", "--config", str(config), home=tmp_path)
    assert latest.returncode == 0, latest.stderr
    assert "cam-1" in latest.stdout and "cam-2" in latest.stdout
    # cam-1's history is read from the damaged files: what is left is shown, the lost file named
    history = calmon("results", "--config", str(config), "--device", "cam-1", home=tmp_path)
    assert history.returncode == 0, history.stderr
    assert "2026-11-20" not in history.stdout
    assert lost in history.stderr and "Traceback" not in history.stderr


def test_estimate_of_another_devices_query_is_refused_unless_forced(scans, tmp_path):  # noqa: F811
    cache = tmp_path / "cache"
    refused = calmon("estimate", str(scans["reference"]), str(scans["other"]), home=tmp_path)
    assert refused.returncode == 2 and "devices differ" in refused.stderr and "--force" in refused.stderr
    forced = calmon(
        "estimate",
        str(scans["reference"]),
        str(scans["other"]),
        "--force",
        "--features-cache",
        str(cache),
        home=tmp_path,
    )
    assert forced.returncode == 0, forced.stderr
    assert not (scans["reference"] / FEATURES_DIR).exists() and any(cache.iterdir())


def test_estimate_builds_features_in_the_user_cache_by_default(scans, tmp_path):  # noqa: F811
    proc = calmon("estimate", str(scans["reference"]), str(scans["query"]), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (scans["reference"] / FEATURES_DIR).exists()
    assert any((tmp_path / ".cache" / "calmon" / "features").iterdir())
