"""The Dagster UI as an ops engineer opens it, in a real browser (headless Chromium), after check
cycles of a simulated site run the way `calmon monitor` runs them; and the retained correction the
same cycles publish on the site's broker."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from calmon_assets.defs.partitions import current_time_key
from calmon_assets.defs.runs import CHECK_STATUS_TAG
from scripts.ui_screenshots import browser_missing, screenshot_ui
from tests.sim_site import device, start_site, stop_site
from tests.test_corrections import retained_message

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC)
HOURS = [current_time_key(NOW - timedelta(hours=h)) for h in (2, 1)]
TOPIC = "calmon/{deployment}/{device}/correction"
BAD_OFFSET = (0.8, -0.3, 0.1)


@pytest.fixture(scope="module")
def site(tmp_path_factory, shared_broker):
    monkeypatch = pytest.MonkeyPatch()
    deployments = [
        {
            "name": "harbor",
            "devices": [device("cam-ok", 11, yaw=5.0), device("cam-bad", 12, yaw=10.0, offset=BAD_OFFSET)],
        }
    ]
    s = start_site(tmp_path_factory.mktemp("ui"), shared_broker, deployments, None, monkeypatch)
    ini = s.config_dir / "calibration_monitoring.ini"
    ini.write_text(ini.read_text() + f"\n[corrections]\nmqtt_topic = {TOPIC}\n")
    platform = s.platform_with_references()
    for hour in HOURS:
        runs = platform.run_check_cycle(hour)  # one run: the deployment's two cameras
        assert [r.error for r in runs if not r.succeeded] == []
        platform.send_alerts()
    platform.refresh_fleet_health()
    yield s, platform
    stop_site(s)
    monkeypatch.undo()


def test_cli_runs_belong_to_their_job_and_say_what_the_check_found(site):
    _, platform = site
    runs = platform.instance.get_runs(dg.RunsFilter(job_name="calibration_check"))
    assert len(runs) == len(HOURS)  # one per deployment and hour
    locations = {r.remote_job_origin.location_name for r in runs if r.remote_job_origin is not None}
    assert locations == {"calmon_assets.definitions:defs"}  # workspace.yaml's code location
    assert all(r.remote_job_origin is not None and r.job_code_origin is not None for r in runs)
    # the run says the worst its checks found
    assert {r.tags["dagster/partition"]: r.tags.get(CHECK_STATUS_TAG) for r in runs} == {
        f"harbor|{hour}": "breach" for hour in HOURS
    }


def test_checks_are_evaluated_per_partition_naming_the_device(site):
    _, platform = site
    key = dg.AssetCheckKey(dg.AssetKey("calibration_offsets"), "within_threshold")
    records = platform.instance.event_log_storage.get_asset_check_execution_history(key, limit=20)
    by_partition = {r.event.dagster_event.event_specific_data.partition: r for r in records}  # type: ignore[union-attr]
    bad = by_partition[f"harbor|{HOURS[-1]}"].event.dagster_event.event_specific_data  # type: ignore[union-attr]
    assert bad.passed is False and bad.severity == dg.AssetCheckSeverity.ERROR
    head, devices = bad.description.split(": ", 1)
    first, second = devices.split("; ")
    assert head == "1 of 2 device(s) did not pass"
    assert first.startswith(f"cam-bad at {HOURS[-1]}: BREACH") and second.startswith(f"cam-ok at {HOURS[-1]}: within")
    assert bad.metadata["failing_devices"].value == "cam-bad" and bad.metadata["check_time"].value == HOURS[-1]
    assert {d: v["passed"] for d, v in bad.metadata["devices"].value.items()} == {"cam-bad": False, "cam-ok": True}


def test_calibration_offsets_metadata_has_no_numbers_for_plots_to_join(site):
    _, platform = site
    event = platform.instance.get_latest_materialization_event(dg.AssetKey("calibration_offsets"))
    metadata = event.asset_materialization.metadata
    numeric = [k for k, v in metadata.items() if isinstance(v, (dg.FloatMetadataValue, dg.IntMetadataValue))]
    assert numeric == []
    # each device's row of the partition's table, its offsets as text
    table = metadata["devices"].value
    assert re.search(r"\| cam-bad \| breach \| \+0\.[78]\d\d° ± 0\.\d+ \|", table) and "| cam-ok | ok |" in table
    assert metadata["worst_device"].value == "cam-bad" and metadata["status"].value == "breach"


def test_each_conclusive_check_leaves_the_current_correction_retained_on_the_broker(site, shared_broker):
    s, platform = site
    message = retained_message(shared_broker.host, shared_broker.port, "calmon/harbor/cam-bad/correction")
    assert message is not None and message.retain
    correction = json.loads(message.payload)
    for axis, truth in zip(("yaw", "pitch", "roll"), BAD_OFFSET, strict=True):
        assert correction["offsets_deg"][axis] == pytest.approx(truth, abs=0.05)
    row = platform.resources["results_table"].get_client().read("cam-bad", HOURS[-1])
    assert correction["check_partition"] == HOURS[-1] and correction["offsets_deg"]["yaw"] == round(row.yaw_offset, 4)
    assert correction["since_check_partition"] == HOURS[0]  # the same offset both hours
    (reference,) = platform.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("reference_scan"), asset_partitions=["cam-bad"]), limit=1
    ).records
    assert correction["status"] == "breach"
    assert correction["reference_gauge"] == reference.asset_materialization.metadata["gauge_id"].value


@pytest.mark.timeout(1200)  # the webserver's start and five pages on a loaded machine: minutes
def test_the_ui_in_a_real_browser_shows_the_fleet_and_the_breach(site, tmp_path):
    if reason := browser_missing():
        pytest.skip(reason)
    s, _ = site
    # CALMON_UI_SCREENSHOTS: keep them there to look at (default: the test's temporary folder)
    out = Path(os.environ.get("CALMON_UI_SCREENSHOTS") or tmp_path / "screenshots")
    texts = screenshot_ui(s.config_dir, s.root / "dagster_home", out, f"harbor|{HOURS[-1]}")
    assert sorted(p.name for p in out.glob("*.png")) == [
        "breached_check.png",
        "breached_check_partitions.png",
        "fleet_heat_map.png",
        "fleet_view.png",
        "offsets_partitions.png",
    ]
    assert all((out / f"{name}.png").stat().st_size > 20_000 for name in texts)  # pictures, not blank pages
    fleet = texts["fleet_view"]
    assert "cam-bad" in fleet and "breach" in fleet and "cam-ok" in fleet
    assert "cam-bad" in texts["offsets_partitions"] and "cam-ok" in texts["offsets_partitions"]
    check = texts["breached_check"]
    assert f"cam-bad at {HOURS[-1]}: BREACH" in check and "Failed" in check
    # the check's partitions: harbor's failed every hour, on cam-bad
    partitions = texts["breached_check_partitions"]
    assert f"Failed ({len(HOURS)})" in partitions
