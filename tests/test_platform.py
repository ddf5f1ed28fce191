"""End to end through Dagster: the simulated fleet, a real broker, moto's S3 over HTTP, the SQLite
Iceberg catalog and a local Slack receiver; assets materialised by the same jobs the schedule runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import dagster as dg
import pytest

from calmon_assets.defs.partitions import check_partition_key, current_time_key
from calmon_core.layout import format_timestamp, query_scan_prefix, reference_scan_prefix
from calmon_core.models import CheckStatus
from tests.sim_site import device, start_site, stop_site

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC)
HOUR_1 = current_time_key(NOW - timedelta(hours=3))
HOUR_2 = current_time_key(NOW - timedelta(hours=2))
HOUR_3 = current_time_key(NOW - timedelta(hours=1))


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    from calmon_sim.broker import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="camera-calibration-monitoring")
    yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, shared_broker, s3_endpoint):
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    deployments = [
        {
            "name": "harbor",
            "devices": [device("cam-ok", 11, yaw=5.0), device("cam-bad", 12, yaw=10.0, offset=(0.8, -0.3, 0.1))],
        },
        {
            "name": "city",
            "devices": [
                device(
                    "cam-act",
                    13,
                    yaw=0.0,
                    offset=(-0.6, 0.2, 0.0),
                    mode="active",
                    active_ptz_stops=[[-15.0, 0.0, 1.0], [20.0, -3.0, 1.5]],
                )
            ],
        },
    ]
    s = start_site(tmp_path_factory.mktemp("site"), shared_broker, deployments, s3_endpoint, monkeypatch)
    yield s
    stop_site(s)
    monkeypatch.undo()


@pytest.fixture(scope="module")
def platform(site):
    return site.platform_with_references()


def s3_keys(endpoint: str, prefix: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="camera-calibration-monitoring", Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_reference_scans_land_under_documented_keys(platform, s3_endpoint):
    keys = s3_keys(s3_endpoint, reference_scan_prefix("harbor", "cam-bad"))
    assert f"{reference_scan_prefix('harbor', 'cam-bad')}/manifest.json" in keys
    assert sum(k.endswith(".jpg") for k in keys) == 8  # 4 yaws x 2 pitches
    assert any("/features/" in k for k in keys)
    event = platform.instance.get_latest_materialization_event(dg.AssetKey("reference_scan"))
    assert event is not None
    meta = event.asset_materialization.metadata
    assert meta["frames"].value == 8 and "data:image" in meta["contact_sheet"].value
    assert "| zoom |" in meta["lens"].value or "No lens fitted" in meta["lens"].value


def test_recollection_keeps_the_gauge_and_a_regime_run_adds_a_bank_entry(platform):
    def gauge_of_latest() -> dict:
        event = platform.instance.get_latest_materialization_event(dg.AssetKey("reference_scan"))
        return event.asset_materialization.metadata["registration"].value

    assert all(r.succeeded for r in platform.collect_references(["cam-ok"]))
    again = gauge_of_latest()
    assert again["method"] == "registered" and max(abs(v) for v in again["correction_deg"].values()) < 0.05
    assert all(r.succeeded for r in platform.collect_references(["cam-ok"], regime="night"))
    night = gauge_of_latest()
    assert night["bank_entry"] == "night" and night["gauge_id"] == again["gauge_id"]


def test_check_cycle_rows_files_and_alerts(platform, site, s3_endpoint):
    runs = platform.run_check_cycle(HOUR_1)
    assert [r.error for r in runs if not r.succeeded] == []
    table = platform.resources["results_table"].get_client()
    rows = {d: table.read(d, HOUR_1) for d in ("cam-ok", "cam-bad", "cam-act")}
    for device_id, row in rows.items():
        truth = site.fleet.cameras[device_id].truth()["true_offset"]
        assert row is not None and row.success, (device_id, row and row.failure_log)
        for axis in ("yaw", "pitch", "roll"):
            assert getattr(row, f"{axis}_offset") == pytest.approx(truth[axis], abs=0.05), (device_id, axis)
        assert row.files_location.startswith("s3://camera-calibration-monitoring/")
        # measured in daylight against the original reference, in the gauge the reference scan started
        assert (row.lighting_regime, row.bank_entry) == ("day", "reference")
        assert row.gauge_id and row.gauge_id.startswith("gauge-")
    assert rows["cam-ok"].status == CheckStatus.ok
    assert rows["cam-bad"].status == CheckStatus.breach
    assert rows["cam-act"].status == CheckStatus.breach and rows["cam-act"].mode == "active"
    assert rows["cam-act"].frames_used == 2

    stamp = format_timestamp(
        platform.defs.resolve_job_def("calibration_check")
        .partitions_def.get_partitions_def_for_dimension("time")  # type: ignore[union-attr]
        .time_window_for_partition_key(HOUR_1)
        .start
    )
    keys = s3_keys(s3_endpoint, query_scan_prefix("harbor", "cam-bad", stamp))
    assert f"{query_scan_prefix('harbor', 'cam-bad', stamp)}/manifest.json" in keys
    assert any(k.endswith(".jpg") for k in keys)

    sent = platform.send_alerts()
    assert len(sent) == 3
    by_device = {d: next(t for t in sent if d in t) for d in rows}
    assert "🚨" in by_device["cam-bad"] and "✅" in by_device["cam-ok"] and "🚨" in by_device["cam-act"]
    assert site.slack.texts()[-3:] == sent  # they travelled over HTTP to the receiver
    assert platform.send_alerts() == []  # nothing is alerted twice


def test_backfill_replaces_rows_without_duplicates_or_alerts(platform):
    table = platform.resources["results_table"].get_client()
    before = {r.device_id: r for r in table.all_rows() if r.check_partition == HOUR_1}
    job = platform.defs.resolve_job_def("reprocess_offsets")
    # a backfill re-estimates a deployment's check: every device of the partition, in one run
    result = job.execute_in_process(
        partition_key=str(check_partition_key("harbor", HOUR_1)),
        instance=platform.instance,
        tags={"dagster/backfill": "testbackfill"},
    )
    assert result.success
    rows = [r for r in table.all_rows() if r.check_partition == HOUR_1]
    assert sorted(r.device_id for r in rows) == ["cam-act", "cam-bad", "cam-ok"]  # still one each
    after = {r.device_id: r for r in rows}
    assert after["cam-bad"].run_id != before["cam-bad"].run_id  # replaced by the backfill's run
    # the same capture, re-estimated: FLANN's randomised trees vary the matches a little between runs
    assert after["cam-bad"].yaw_offset == pytest.approx(before["cam-bad"].yaw_offset, abs=0.005)
    assert platform.send_alerts() == []  # a backfill does not re-alert


def test_an_hour_without_a_stored_capture_value_is_re_estimated_from_the_object_store(platform):
    """An hour checked before checks were partitioned by deployment has no deployment-wide
    query_capture value: a backfill of it finds each device's capture under query_scan/."""
    table = platform.resources["results_table"].get_client()
    before = {r.device_id: r for r in table.all_rows() if r.check_partition == HOUR_1}
    s3 = boto3.client("s3", endpoint_url=store_endpoint(platform), region_name="us-east-1")
    bucket = "camera-calibration-monitoring"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dagster/io/query_capture/harbor/").get("Contents", [])
    values = {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}
    assert any(HOUR_1 in key for key in values)  # the S3 IO manager keeps the values in the bucket
    for key in values:
        s3.delete_object(Bucket=bucket, Key=key)
    try:
        result = platform.defs.resolve_job_def("reprocess_offsets").execute_in_process(
            partition_key=str(check_partition_key("harbor", HOUR_1)),
            instance=platform.instance,
            tags={"dagster/backfill": "from-the-store"},
        )
    finally:
        for key, data in values.items():
            s3.put_object(Bucket=bucket, Key=key, Body=data)
    assert result.success
    after = {r.device_id: r for r in table.all_rows() if r.check_partition == HOUR_1}
    for device_id in ("cam-ok", "cam-bad"):
        assert after[device_id].run_id == result.run_id != before[device_id].run_id
        assert after[device_id].success and after[device_id].files_location == before[device_id].files_location
        assert after[device_id].yaw_offset == pytest.approx(before[device_id].yaw_offset, abs=0.005)
    assert after["cam-act"] == before["cam-act"]  # another deployment's row is not touched


def test_recovery_and_failed_check(platform, site):
    site.fleet.cameras["cam-bad"].set_true_offset(0.0, 0.0, 0.0)
    site.fleet.cameras["cam-ok"].set_faults(offline=True)
    try:
        runs = platform.run_check_cycle(HOUR_2, device_ids=["cam-ok", "cam-bad"])
    finally:
        site.fleet.cameras["cam-ok"].clear_faults()
    assert all(r.succeeded for r in runs)  # a failed check is a successful run with a failed row
    table = platform.resources["results_table"].get_client()
    failed = table.read("cam-ok", HOUR_2)
    assert failed.success is False and failed.status == CheckStatus.failed
    assert "cam-ok" in failed.failure_log and "capture failed" in failed.failure_log
    recovered = table.read("cam-bad", HOUR_2)
    assert recovered.status == CheckStatus.ok
    sent = platform.send_alerts()
    assert any("❌" in t and "cam-ok" in t for t in sent)
    assert any("cam-bad" in t and "recover" in t.lower() for t in sent)


def test_a_recheck_of_one_camera_keeps_the_partitions_other_captures(platform):
    """`calmon monitor --device cam-ok` re-checks cam-ok alone in harbor's partition; a later
    backfill of the partition still re-estimates cam-bad from the capture taken before."""
    table = platform.resources["results_table"].get_client()
    earlier_bad = table.read("cam-bad", HOUR_2)
    (run,) = platform.run_check_cycle(HOUR_2, device_ids=["cam-ok"])
    assert run.succeeded and run.outcome == "ok" and table.read("cam-ok", HOUR_2).run_id == run.run_id
    assert table.read("cam-bad", HOUR_2) == earlier_bad  # not re-checked
    result = platform.defs.resolve_job_def("reprocess_offsets").execute_in_process(
        partition_key=str(check_partition_key("harbor", HOUR_2)),
        instance=platform.instance,
        tags={"dagster/backfill": "both"},
    )
    assert result.success
    rows = {d: table.read(d, HOUR_2) for d in ("cam-ok", "cam-bad")}
    assert {d: r.run_id for d, r in rows.items()} == {"cam-ok": result.run_id, "cam-bad": result.run_id}
    assert rows["cam-bad"].files_location == earlier_bad.files_location and rows["cam-bad"].status == CheckStatus.ok


def test_missing_reference_is_a_failed_row(platform, site):
    # a device added to devices.yaml after the reference scans were collected
    from calmon_core.config import load_fleet

    fleet = load_fleet(site.config_dir / "devices.yaml")
    assert "cam-act" in {d.id for _, d in fleet.devices()}
    store = platform.resources["object_store"].get_client()
    prefix = reference_scan_prefix("city", "cam-act")
    saved = {k: store.get_bytes(k) for k in store.list(prefix)}
    s3 = boto3.client("s3", endpoint_url=store_endpoint(platform), region_name="us-east-1")
    for key in saved:
        s3.delete_object(Bucket="camera-calibration-monitoring", Key=key)
    try:
        import shutil

        shutil.rmtree(site.root / "work" / "cache" / "city" / "cam-act", ignore_errors=True)
        runs = platform.run_check_cycle(HOUR_3, device_ids=["cam-act"])
        assert runs[0].succeeded
        row = platform.resources["results_table"].get_client().read("cam-act", HOUR_3)
        assert row.success is False and "reference scan" in row.failure_log
    finally:
        for key, data in saved.items():
            store.put_bytes(key, data)


def store_endpoint(platform) -> str:
    return platform.config.settings.aws.endpoint_url


def test_schedule_requests_one_run_per_enabled_device(platform):
    from calmon_assets.defs.partitions import current_time_key as key_for

    schedule = platform.defs.resolve_schedule_def("calibration_check_schedule")
    tick = datetime(2026, 11, 24, 13, 5, tzinfo=UTC)
    with dg.build_schedule_context(
        instance=platform.instance,
        scheduled_execution_time=tick,
        resources=platform.resources,
        repository_def=platform.defs.get_repository_def(),
    ) as context:
        requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert key_for(tick) == "2026-11-24-13:00"
    # one run per deployment, checking all its devices
    assert sorted(r.partition_key for r in requests) == ["city|2026-11-24-13:00", "harbor|2026-11-24-13:00"]
    assert {r.tags["calmon/deployment"] for r in requests} == {"harbor", "city"}


def test_device_sync_adds_and_never_deletes(platform, site, tmp_path):
    import shutil

    import yaml

    from calmon_assets.defs.devices.sensors import sync_devices_sensor

    config_dir = tmp_path / "configs"
    shutil.copytree(site.config_dir, config_dir)
    doc = yaml.safe_load((config_dir / "devices.yaml").read_text())
    doc["deployments"][0]["devices"] = doc["deployments"][0]["devices"][:1]  # cam-bad removed
    new = dict(doc["deployments"][1]["devices"][0], id="cam-new")
    doc["deployments"][1]["devices"].append(new)
    (config_dir / "devices.yaml").write_text(yaml.safe_dump(doc))
    from calmon_assets.defs.site_config import SiteConfigResource

    with dg.build_sensor_context(
        instance=platform.instance, resources={"site": SiteConfigResource(config_dir=str(config_dir))}
    ) as ctx:
        result = sync_devices_sensor(ctx)
    requests = result.dynamic_partitions_requests
    assert [list(r.partition_keys) for r in requests] == [["cam-new"]]
    assert "cam-bad" in platform.instance.get_dynamic_partitions("devices")  # history kept


def test_webserver_shows_graph_partitions_and_pictures(platform, site, s3_endpoint):
    """`dagster dev`'s webserver loads workspace.yaml; its GraphQL API shows what the UI shows."""
    import json
    import os
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    from calmon_sim.broker import free_port

    repo = Path(__file__).resolve().parent.parent
    port = free_port()
    env = {**os.environ, "CALMON_CONFIG_DIR": str(site.config_dir), "DAGSTER_HOME": str(site.root / "dagster_home")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-w",
            str(repo / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def graphql(query: str) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["data"]

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "webserver did not start"
                time.sleep(1)
        nodes = graphql(
            "{ assetNodes { assetKey { path } dependencyKeys { path } "
            "partitionDefinition { dimensionTypes { name } } } }"
        )["assetNodes"]
        by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert set(by_key) >= {"reference_scan", "query_capture", "calibration_offsets"}
        assert {d["name"] for d in by_key["calibration_offsets"]["partitionDefinition"]["dimensionTypes"]} == {
            "deployment",
            "time",
        }
        assert {"/".join(k["path"]) for k in by_key["calibration_offsets"]["dependencyKeys"]} == {
            "query_capture",
            "reference_scan",
        }
        asset = graphql(
            '{ assetOrError(assetKey: {path: ["calibration_offsets"]}) { ... on Asset { '
            "assetMaterializations(limit: 5) { partition metadataEntries { label "
            "... on MarkdownMetadataEntry { mdStr } ... on PathMetadataEntry { path } } } } } }"
        )["assetOrError"]
        entries = {e["label"]: e for m in asset["assetMaterializations"] for e in m["metadataEntries"]}
        assert entries["trend"]["mdStr"].startswith("![offset trend](data:image/png;base64,")
        assert "data:image" in entries["diagnostic"]["mdStr"]
        # the inline pictures are previews; the full ones are stored beside the capture
        for name in ("diagnostic_file", "trend_file"):
            uri = entries[name]["path"]
            bucket, key = uri.removeprefix("s3://").split("/", 1)
            assert bucket == "camera-calibration-monitoring" and "/query_scan/" in key and "/diagnostics/" in key
            stored = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").head_object(
                Bucket=bucket, Key=key
            )
            assert stored["ContentLength"] > 1000, uri
    finally:
        proc.terminate()
        proc.wait(20)


def test_failed_reference_run_reports_the_cause(platform, site):
    site.fleet.cameras["cam-ok"].set_faults(offline=True)
    try:
        runs = platform.collect_references(["cam-ok"])
    finally:
        site.fleet.cameras["cam-ok"].clear_faults()
    assert [r.succeeded for r in runs] == [False]
    # the exception's words, for the CLI's progress line, not Dagster's "Execution of step ... failed"
    assert runs[0].error.startswith("reference_scan: ")
    assert "cam-ok" in runs[0].error and "connection refused" in runs[0].error


def test_results_table_maintenance_runs_as_a_scheduled_job_and_keeps_every_row(platform):
    schedule = platform.defs.resolve_schedule_def("results_table_maintenance_schedule")
    assert schedule.cron_schedule == "50 * * * *" and schedule.job_name == "results_table_maintenance"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert all(r.succeeded for r in platform.run_check_cycle(HOUR_1, device_ids=["cam-ok"]))  # a row at least
    table = platform.resources["results_table"].get_client()
    before = sorted((r.device_id, r.check_partition, r.run_id) for r in table.all_rows())
    report = platform.maintain_results_table()
    assert report["files_after"] <= report["files_before"] and report["snapshots_kept"] >= 1
    assert sorted((r.device_id, r.check_partition, r.run_id) for r in table.all_rows()) == before
    (run,) = platform.instance.get_runs(dg.RunsFilter(job_name="results_table_maintenance"))
    assert run.is_success  # in the instance's run history, like the daemon's scheduled runs
    materialized = [
        e.dagster_event.step_output_data.metadata
        for e in platform.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT)
    ]
    assert materialized and materialized[0]["snapshots_kept"].value == report["snapshots_kept"]
