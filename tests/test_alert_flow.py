"""End to end through Dagster with the state_change alert policy: a scripted sequence of check
cycles on the simulated fleet (real broker, local object store, SQLite Iceberg catalog, a local
Slack receiver over HTTP) must post exactly the expected messages, a backfill must not re-alert,
and fleet_health must materialize with its table and pictures."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from calmon_assets.defs.partitions import check_partition_key, current_time_key
from calmon_core.models import CheckStatus
from tests.sim_site import device, start_site, stop_site

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC)
HOURS = [current_time_key(NOW - timedelta(hours=8 - i)) for i in range(7)]


@pytest.fixture(scope="module")
def site(tmp_path_factory, shared_broker):
    monkeypatch = pytest.MonkeyPatch()
    deployments = [
        {"name": "harbor", "devices": [device("cam-steady", 21, yaw=5.0), device("cam-moves", 22, yaw=10.0)]},
    ]
    s = start_site(
        tmp_path_factory.mktemp("alert-flow"),
        shared_broker,
        deployments,
        None,
        monkeypatch,
        timeout=6,
        alert_policy="state_change",
    )
    yield s
    stop_site(s)
    monkeypatch.undo()


def _headline(text: str) -> str:
    return text.split("\n", 1)[0]


def test_state_changes_only_and_a_backfill_does_not_realert(site):
    platform = site.platform_with_references()
    cameras = site.fleet.cameras
    table = platform.resources["results_table"].get_client()
    delivered_before = len(site.slack.texts())

    def cycle(hour: int) -> list[str]:
        runs = platform.run_check_cycle(HOURS[hour])
        assert [r.error for r in runs if not r.succeeded] == []
        return [_headline(t) for t in platform.send_alerts()]

    assert cycle(0) == []  # both within threshold: nothing to say
    cameras["cam-moves"].set_true_offset(0.8, 0.0, 0.0)
    assert cycle(1) == []  # one check beyond: not yet evidence
    assert table.read("cam-moves", HOURS[1]).status == CheckStatus.breach
    assert cycle(2) == ["🚨 *harbor* / *cam-moves*: calibration offset above 0.5°"]
    cameras["cam-steady"].set_faults(offline=True)
    try:
        assert cycle(3) == []  # still in breach: no repeat; one failed check: no alarm yet
        assert cycle(4) == []
        assert cycle(5) == ["❌ *harbor* / *cam-steady*: check failed (3 checks in a row)"]
    finally:
        cameras["cam-steady"].clear_faults()
    cameras["cam-moves"].set_true_offset(0.0, 0.0, 0.0)
    assert cycle(6) == []  # one good check: recovery needs two
    runs = platform.run_check_cycle(current_time_key(NOW))
    assert all(r.succeeded for r in runs)
    assert [_headline(t) for t in platform.send_alerts()] == ["✅ *harbor* / *cam-moves*: recovered, back within 0.5°"]

    # a backfill re-estimates the breach partition's camera: the same state change is not news again
    job = platform.defs.resolve_job_def("reprocess_offsets")
    result = job.execute_in_process(
        partition_key=str(check_partition_key("harbor", HOURS[2])),
        instance=platform.instance,
        tags={"dagster/backfill": "test-backfill"},
        run_config={"ops": {"calibration_offsets": {"config": {"devices": ["cam-moves"]}}}},
    )
    assert result.success
    assert platform.send_alerts() == []

    received = site.slack.texts()[delivered_before:]
    assert [_headline(t) for t in received] == [
        "🚨 *harbor* / *cam-moves*: calibration offset above 0.5°",
        "❌ *harbor* / *cam-steady*: check failed (3 checks in a row)",
        "✅ *harbor* / *cam-moves*: recovered, back within 0.5°",
    ]
    assert "2 checks in a row beyond 0.5° the same way" in received[0]
    assert all("files:" in t for t in received[:1])


def test_fleet_health_materializes_with_table_and_pictures(site, tmp_path):
    platform = site.platforms[0] if site.platforms else site.platform_with_references()
    metadata = platform.refresh_fleet_health()
    # the overview, shown in place: a table entry with one short row per device
    fleet = metadata["fleet"].value
    assert sorted(r.data["device"] for r in fleet.records) == ["cam-moves", "cam-steady"]
    assert [c.name for c in fleet.schema.columns] == ["device", "status", "worst", "trend", "threshold", "last good"]
    details = metadata["fleet_details"].value
    assert "| cam-moves | harbor |" in details and "| cam-steady | harbor |" in details
    assert metadata["devices"].value == 2
    for key in ("heat_map", "worst_devices"):
        images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", metadata[key].value)
        assert images, key
        for i, data in enumerate(images):
            png = base64.b64decode(data)
            assert png.startswith(b"\x89PNG")
            (tmp_path / f"{key}-{i}.png").write_bytes(png)
    assert metadata["digest"].value.startswith("📋 *fleet* daily calibration digest")
    event = platform.instance.get_latest_materialization_event(dg.AssetKey("fleet_health"))
    assert event is not None
