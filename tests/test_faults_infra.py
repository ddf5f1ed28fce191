"""Infrastructure faults, end to end through Dagster: S3 failing, the Iceberg table contended, Slack
failing, broken reference scans, devices.yaml edited between ticks, unsafe device ids.

Every scheduled check must end as exactly one honest row and a Slack message, and the other devices
of the same cycle must not notice. Real parts only: the simulated fleet, a real broker, moto's S3
over HTTP behind a proxy that can fail (tests/servers.FlakyProxy), the SQLite Iceberg catalog, and
local HTTP Slack receivers.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import boto3
import dagster as dg
import pytest
import yaml

from calmon_assets.defs.devices.sensors import sync_devices_sensor
from calmon_assets.defs.partitions import check_partition_key, check_time_partitions, current_time_key
from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.check import failed_check
from calmon_core.layout import format_timestamp, query_scan_prefix, reference_scan_prefix
from calmon_core.models import CheckStatus
from resources.results_table import ResultsTable, to_arrow
from tests.servers import FlakyProxy, ScriptedWebhook, moto_server
from tests.sim_site import device, start_site, stop_site

pytestmark = pytest.mark.slow

BUCKET = "camera-calibration-monitoring"
NOW = datetime.now(UTC)


def hour(hours_ago: int) -> str:
    return current_time_key(NOW - timedelta(hours=hours_ago))


# one time partition per case, so rows of different cases never share a check key
HOUR_S3_FLAKY = hour(30)
HOUR_S3_DOWN = hour(29)
HOUR_ICEBERG = hour(28)
HOUR_SLACK_FLAKY = hour(27)
HOUR_SLACK_DOWN = hour(26)
HOUR_REF_MISSING = hour(25)
HOUR_REF_CORRUPT = hour(24)
HOUR_RUN_CRASH = hour(31)
TICK_1 = (NOW - timedelta(hours=23)).replace(minute=5, second=0, microsecond=0)
TICK_2 = TICK_1 + timedelta(hours=1)

CAM_A, CAM_B, CAM_C, CAM_NEW = "cam-a", "cam-b", "cam-c", "cam-new"
TRUE_OFFSETS = {CAM_A: (0.0, 0.0, 0.0), CAM_B: (0.8, -0.3, 0.1), CAM_C: (-0.2, 0.1, 0.0), CAM_NEW: (0.0, 0.6, 0.0)}
DEPLOYMENT = {CAM_A: "harbor", CAM_B: "harbor", CAM_C: "city", CAM_NEW: "harbor"}


@pytest.fixture(scope="module")
def s3():
    """moto's S3 over HTTP with the bucket, and a FlakyProxy in front of it that passes everything
    until a test sets `proxy.failures` higher than `proxy.failed`."""
    patch = pytest.MonkeyPatch()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        patch.setenv(key, value)
    with moto_server() as endpoint, FlakyProxy(endpoint, failures=0) as proxy:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield endpoint, proxy
    patch.undo()


@pytest.fixture(scope="module")
def site(tmp_path_factory, shared_broker, s3):
    _, proxy = s3
    monkeypatch = pytest.MonkeyPatch()
    deployments = [
        {
            "name": "harbor",
            "devices": [
                device(CAM_A, 21, yaw=5.0, offset=TRUE_OFFSETS[CAM_A]),
                device(CAM_B, 22, yaw=10.0, offset=TRUE_OFFSETS[CAM_B]),
                device(CAM_NEW, 24, yaw=-5.0, offset=TRUE_OFFSETS[CAM_NEW]),
            ],
        },
        {"name": "city", "devices": [device(CAM_C, 23, yaw=0.0, offset=TRUE_OFFSETS[CAM_C])]},
    ]
    s = start_site(tmp_path_factory.mktemp("faults-infra"), shared_broker, deployments, proxy.url, monkeypatch)
    # cam-new is served by the fleet but joins devices.yaml only in the devices.yaml case
    write_devices(s, without=[CAM_NEW])
    yield s
    stop_site(s)
    monkeypatch.undo()


@pytest.fixture(scope="module")
def platform(site):
    return site.platform_with_references()


def write_devices(site, without=()) -> None:
    """devices.yaml for the fleet's cameras except `without`."""
    doc = site.fleet.devices_config()
    for dep in doc["deployments"]:
        dep["devices"] = [d for d in dep["devices"] if d["id"] not in without]
    (site.config_dir / "devices.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def table(platform):
    return platform.resources["results_table"].get_client()


def rows_of(platform, time_key: str) -> dict[str, list]:
    """Every row of one time partition, by device (a list: duplicates must show)."""
    rows: dict[str, list] = {}
    for row in table(platform).all_rows():
        if row.check_partition == time_key:
            rows.setdefault(row.device_id, []).append(row)
    return rows


def window_stamp(time_key: str) -> str:
    return format_timestamp(check_time_partitions.time_window_for_partition_key(time_key).start)


def s3_keys(endpoint: str, prefix: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def assert_measured(row, device_id: str) -> None:
    """A successful row whose offsets are the camera's hidden ones."""
    assert row.success, (device_id, row.failure_log)
    for axis, truth in zip(("yaw", "pitch", "roll"), TRUE_OFFSETS[device_id], strict=True):
        assert getattr(row, f"{axis}_offset") == pytest.approx(truth, abs=0.05), (device_id, axis)
    expected = CheckStatus.breach if max(map(abs, TRUE_OFFSETS[device_id])) > 0.5 else CheckStatus.ok
    assert row.status == expected


def message_for(texts: list[str], device_id: str) -> str:
    found = [t for t in texts if f"/ *{device_id}*:" in t]
    assert len(found) == 1, (device_id, texts)
    return found[0]


def headline(row) -> str:
    where = f"*{row.deployment_name}* / *{row.device_id}*"
    return {
        CheckStatus.ok: f"✅ {where}: within 0.5°",
        CheckStatus.breach: f"🚨 {where}: calibration offset above 0.5°",
        CheckStatus.failed: f"❌ {where}: check failed",
    }[CheckStatus(row.status)]


def no_reference_reason(device_id: str) -> str:
    return f"no usable reference scan for {device_id}; run `calmon collect-references --device {device_id}` ("


# --------------------------------------------------------------------------- 1. S3 500s, recovers


@pytest.fixture(scope="module")
def flaky_cycle(platform, s3):
    """A cycle during which S3 answers its first four requests with 500 (fewer than the store's
    five attempts per request, wherever they fall), then recovers."""
    _, proxy = s3
    before = proxy.failed
    proxy.failures = before + 4
    try:
        runs = platform.run_check_cycle(HOUR_S3_FLAKY, device_ids=[CAM_A, CAM_B, CAM_C])
    finally:
        injected, proxy.failures = proxy.failed - before, proxy.failed
    return runs, injected, platform.send_alerts()


def test_s3_500s_then_recovery_files_land(platform, s3, flaky_cycle):
    endpoint, _ = s3
    runs, injected, sent = flaky_cycle
    assert injected == 4  # the failures really happened
    assert [(r.device_id, r.succeeded) for r in runs] == [(CAM_A, True), (CAM_B, True), (CAM_C, True)]
    rows = rows_of(platform, HOUR_S3_FLAKY)
    assert sorted(rows) == [CAM_A, CAM_B, CAM_C] and all(len(v) == 1 for v in rows.values())
    for device_id, (row,) in rows.items():
        assert_measured(row, device_id)
        assert row.failure_log is None
        prefix = query_scan_prefix(DEPLOYMENT[device_id], device_id, window_stamp(HOUR_S3_FLAKY))
        assert row.files_location == f"s3://{BUCKET}/{prefix}"
        keys = s3_keys(endpoint, prefix)
        assert f"{prefix}/manifest.json" in keys
        assert any(k.endswith(".jpg") for k in keys) and any("/diagnostics/" in k for k in keys)
        text = message_for(sent, device_id)
        assert text.startswith(headline(row)) and f"files: {row.files_location}" in text
        assert "note:" not in text
    assert len(sent) == 3


# --------------------------------------------------------------------------- 2. S3 down


def test_s3_down_for_the_whole_check_rows_still_land(platform, site, s3, flaky_cycle):
    """Estimates come from the local capture and the cached reference; the row says what was not
    stored. A worker without a cached reference gets a failed row that blames the store, not the scan."""
    endpoint, proxy = s3
    shutil.rmtree(site.root / "work" / "cache" / "city" / CAM_C)  # this worker never cached cam-c's
    proxy.failures = 10**9
    try:
        runs = platform.run_check_cycle(HOUR_S3_DOWN, device_ids=[CAM_A, CAM_B, CAM_C])
    finally:
        proxy.failures = proxy.failed
    assert all(r.succeeded for r in runs)
    stamp = window_stamp(HOUR_S3_DOWN)
    rows = rows_of(platform, HOUR_S3_DOWN)
    assert sorted(rows) == [CAM_A, CAM_B, CAM_C] and all(len(v) == 1 for v in rows.values())

    def not_stored(device_id: str) -> str:
        return (
            rf"files could not be stored: upload to s3://{BUCKET}/{DEPLOYMENT[device_id]}/{device_id}"
            rf"/query_scan/{stamp}/\S+ failed after 5 attempt\(s\): InternalError \(HTTP 500\): injected failure"
        )

    def manifest_failed(device_id: str) -> str:
        return (
            rf"download of s3://{BUCKET}/{reference_scan_prefix(DEPLOYMENT[device_id], device_id)}"
            r"/manifest.json failed after 5 attempt\(s\): InternalError \(HTTP 500\): injected failure"
        )

    sent = platform.send_alerts()
    for device_id in (CAM_A, CAM_B):
        (row,) = rows[device_id]
        assert_measured(row, device_id)
        assert row.files_location is None
        assert re.fullmatch(
            f"{not_stored(device_id)}; reference scan taken from the local cache: {manifest_failed(device_id)}",
            row.failure_log,
        ), row.failure_log
        text = message_for(sent, device_id)
        assert text.startswith(headline(row)) and "note: files could not be stored: upload to" in text
        assert "files: " not in text
    (row,) = rows[CAM_C]
    assert (row.success, row.status) == (False, CheckStatus.failed)
    assert re.fullmatch(
        f"reference scan for {CAM_C} could not be fetched, the object store is unreachable "
        rf"\({manifest_failed(CAM_C)}\); {not_stored(CAM_C)}",
        row.failure_log,
    ), row.failure_log
    assert "collect-references" not in row.failure_log  # the scan is fine: nothing to redo
    text = message_for(sent, CAM_C)
    assert text.startswith(headline(row)) and f"reason: reference scan for {CAM_C} could not be fetched" in text
    assert len(sent) == 3
    for device_id in (CAM_A, CAM_B, CAM_C):
        assert s3_keys(endpoint, query_scan_prefix(DEPLOYMENT[device_id], device_id, stamp)) == []


# --------------------------------------------------------------------------- 3. Iceberg conflicts


def test_iceberg_commit_conflicts_from_a_concurrent_writer(platform, flaky_cycle, caplog):
    """Another writer commits to the same table the whole time the cycle writes its rows."""
    settings = platform.config.settings
    writer = ResultsTable(settings.results, settings.aws)  # its own catalog connection, like a process
    stop, written, errors = threading.Event(), [], []

    def cycle_met_a_conflict() -> bool:
        """A commit of the cycle's (another thread's) found the table changed under it."""
        me = threading.current_thread().name
        return any("concurrent update" in r.getMessage() and r.threadName != me for r in list(caplog.records))

    def write_other_rows() -> None:
        try:
            # once the cycle has met a conflict the writer stops: the case is made, and a writer
            # committing every few ms could keep winning the race against the cycle's slower upsert
            while not stop.is_set() and not (len(written) > 3 and cycle_met_a_conflict()):
                key = current_time_key(NOW - timedelta(days=400, hours=len(written)))
                row = failed_check(
                    deployment_name="elsewhere",
                    device_id="cam-other",
                    check_partition=key,
                    reason="written by the other writer",
                    mode="passive",
                )
                # plain appends back to back, so that the other writer is nearly always between
                # loading the history and committing to it: the cycle's commits (one per
                # deployment) then always land inside one of its commits and conflict with it.
                # An upsert would spend half its time on the current-state table instead.
                writer.append_arrow(to_arrow([row]))
                written.append(key)
                stop.wait(0.001)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    other = threading.Thread(target=write_other_rows)
    with caplog.at_level(logging.WARNING, logger="pyiceberg"):
        other.start()
        try:
            runs = platform.run_check_cycle(HOUR_ICEBERG, device_ids=[CAM_A, CAM_B, CAM_C])
        finally:
            stop.set()
            other.join(60)
    assert errors == [] and all(r.succeeded for r in runs)
    # the conflicts happened: pyiceberg's commit retries (which reload the table) and ours
    conflicts = [r for r in caplog.records if "concurrent update" in r.getMessage()]
    assert len(conflicts) + writer.commit_attempts - len(written) > 0, "no conflict: the case proved nothing"
    rows = rows_of(platform, HOUR_ICEBERG)
    assert sorted(rows) == [CAM_A, CAM_B, CAM_C] and all(len(v) == 1 for v in rows.values())
    for device_id, (row,) in rows.items():
        assert_measured(row, device_id)
    others = sorted(r.check_partition for r in table(platform).all_rows() if r.device_id == "cam-other")
    assert others == sorted(written) and len(written) > 3  # the other writer lost nothing either
    sent = platform.send_alerts()
    assert sorted(message_for(sent, d).splitlines()[0] for d in rows) == sorted(headline(rows[d][0]) for d in rows)


# --------------------------------------------------------------------------- 4. Slack failing


@pytest.fixture
def webhook(platform, monkeypatch):
    """A scripted Slack webhook in place of the site's receiver (the resource reads the variable
    each time it makes a client). Alerts an earlier test left pending (one that failed before it
    sent them) are delivered first and forgotten, so that each test sees only its own messages."""
    receiver = ScriptedWebhook()
    monkeypatch.setenv("CALMON_TEST_WEBHOOK", receiver.url)
    platform.send_alerts()
    receiver.requests.clear()
    yield receiver
    receiver.stop()


def test_slack_429_and_500_then_delivered(platform, webhook):
    webhook.script = [(429, {"Retry-After": "1"}), (500, {})]
    runs = platform.run_check_cycle(HOUR_SLACK_FLAKY, device_ids=[CAM_A, CAM_C])
    assert all(r.succeeded for r in runs)
    sent = platform.send_alerts()
    rows = rows_of(platform, HOUR_SLACK_FLAKY)
    assert sorted(rows) == [CAM_A, CAM_C] and all(len(v) == 1 for v in rows.values())
    for device_id, (row,) in rows.items():
        assert_measured(row, device_id)
        assert message_for(sent, device_id).startswith(headline(row))
    first, second = sent
    assert webhook.texts() == [first, first, first, second]  # 429, 500, delivered; delivered
    assert platform.send_alerts() == []  # delivered ones are not sent again


def test_slack_down_keeps_rows_logs_without_url_and_delivers_later(platform, webhook, caplog, capfd):
    from calmon_assets.defs.alerts.sensors import slack_alerts_sensor

    webhook.script = [(500, {})] * 8  # two ticks' worth: every attempt fails
    runs = platform.run_check_cycle(HOUR_SLACK_DOWN, device_ids=[CAM_A, CAM_C])
    assert all(r.succeeded for r in runs)
    rows = rows_of(platform, HOUR_SLACK_DOWN)
    assert sorted(rows) == [CAM_A, CAM_C] and all(len(v) == 1 for v in rows.values())
    for device_id, (row,) in rows.items():
        assert_measured(row, device_id)
    capfd.readouterr()
    # the daemon's path: the slack_alerts sensor logs to its tick log (stderr here)
    with dg.build_sensor_context(instance=platform.instance, resources=platform.resources) as context:
        slack_alerts_sensor(context)
    sensor_log = capfd.readouterr().err
    assert len(webhook.requests) == 4 and len(set(webhook.texts())) == 1  # held after its retries
    held = next(d for d in rows if f"/ *{d}*:" in webhook.texts()[0])
    warning = (
        f"{held} {HOUR_SLACK_DOWN}: Slack message not delivered, kept for the next attempt: HTTP 500: server_error"
    )
    assert warning in sensor_log
    # the CLI's path (`calmon monitor`): Python logging
    with caplog.at_level(logging.WARNING, logger="calmon_assets.defs.alerts.sensors"):
        assert platform.send_alerts() == []
    assert [r.getMessage() for r in caplog.records if r.name == "calmon_assets.defs.alerts.sensors"] == [warning]
    assert len(webhook.requests) == 8
    for secret in (webhook.url, "T0SECRET", "B0SECRET", "xoxSECRETtoken"):
        assert secret not in sensor_log and secret not in caplog.text
    # Slack is back: the next tick posts both results, nothing lost and nothing twice
    later = platform.send_alerts()
    assert sorted(message_for(later, d).splitlines()[0] for d in rows) == sorted(headline(rows[d][0]) for d in rows)
    assert webhook.texts()[8:] == later and platform.send_alerts() == []


def test_a_run_that_dies_gets_its_row_and_its_message_even_while_slack_is_down(platform, site, webhook):
    """A check run that dies of something nobody planned for (here: the site's reference cache
    folder is a file, so no estimate of the run has anywhere to go) ends as failed rows and ❌s
    through both paths: `calmon monitor` (in-process runs) and the daemon's record_failed_checks
    sensor. Slack is down when it happens; the ❌ waits for it like every other result."""
    from calmon_assets.defs.checks.failed_runs import record_failed_checks_sensor

    cache = site.root / "work" / "cache"
    saved = cache.with_name("cache.saved")
    if cache.exists():
        shutil.move(cache, saved)
    cache.write_text("not a folder")
    webhook.script = [(500, {})] * 4
    try:
        # the CLI's path
        (run_a,) = platform.run_check_cycle(HOUR_RUN_CRASH, device_ids=[CAM_A])
        # the daemon's path: a launched run fails, the run-failure sensor sees it
        job = platform.defs.resolve_job_def("calibration_check")
        result = job.execute_in_process(
            partition_key=str(check_partition_key(DEPLOYMENT[CAM_C], HOUR_RUN_CRASH)),
            instance=platform.instance,
            tags={"calmon/deployment": DEPLOYMENT[CAM_C]},
            raise_on_error=False,
        )
        assert not result.success
        # evaluated twice: the second time (a sensor retried) must record nothing more
        for _ in range(2):
            with dg.build_run_status_sensor_context(
                sensor_name="record_failed_checks",
                dagster_event=result.get_run_failure_event(),
                dagster_instance=platform.instance,
                dagster_run=result.dagster_run,
                resources=platform.resources,
            ) as context:
                record_failed_checks_sensor(context.for_run_failure())
    finally:
        cache.unlink()
        if saved.exists():
            shutil.move(saved, cache)
    assert not run_a.succeeded and str(cache) in run_a.error
    rows = rows_of(platform, HOUR_RUN_CRASH)
    # the city run covers every enabled device of its deployment
    city = sorted(d for d, dep in DEPLOYMENT.items() if dep == DEPLOYMENT[CAM_C] and d != CAM_NEW)
    assert sorted(rows) == sorted([CAM_A, *city]) and all(len(v) == 1 for v in rows.values())
    run_ids = {CAM_A: run_a.run_id, **{d: result.run_id for d in city}}
    for device_id, (row,) in rows.items():
        assert row.success is False and row.status == CheckStatus.failed and row.run_id == run_ids[device_id]
        assert row.failure_log.startswith(f"check run {run_ids[device_id][:8]} failed: calibration_offsets: ")
        assert str(cache) in row.failure_log  # names the path that broke it
    # Slack is down: the first ❌ is held after its retries, nothing is lost
    assert platform.send_alerts() == [] and len(webhook.requests) == 4
    # Slack is back: one ❌ per device of the dead runs, then nothing more
    later = platform.send_alerts()
    for device_id, (row,) in rows.items():
        text = message_for(later, device_id)
        assert text.splitlines()[0] == headline(row) and row.failure_log[:60] in text
    assert len(later) == len(rows) and platform.send_alerts() == []
    # and the partitions show the failed rows in the UI, not nothing
    for deployment in {DEPLOYMENT[d] for d in rows}:
        record = platform.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("calibration_offsets"),
                asset_partitions=[str(check_partition_key(deployment, HOUR_RUN_CRASH))],
            ),
            limit=5,
        ).records
        assert len(record) == 1 and record[0].asset_materialization.metadata["status"].value == "failed"


# --------------------------------------------------------------------------- 5. broken reference scans


class StoredReferences:
    """The reference scans in the object store, behind calmon's back; put back by restore()."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        self.saved: dict[str, bytes] = {}

    @staticmethod
    def prefix(device_id: str) -> str:
        return reference_scan_prefix(DEPLOYMENT[device_id], device_id)

    def _keep(self, device_id: str) -> list[str]:
        keys = s3_keys(self.endpoint, self.prefix(device_id) + "/")
        for key in keys:
            self.saved.setdefault(key, self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        return keys

    def get(self, device_id: str, relative: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=f"{self.prefix(device_id)}/{relative}")["Body"].read()

    def delete(self, device_id: str) -> None:
        for key in self._keep(device_id):
            self.client.delete_object(Bucket=BUCKET, Key=key)

    def replace(self, device_id: str, relative: str, data: bytes) -> None:
        self._keep(device_id)
        self.client.put_object(Bucket=BUCKET, Key=f"{self.prefix(device_id)}/{relative}", Body=data)

    def restore(self) -> None:
        for key, data in self.saved.items():
            self.client.put_object(Bucket=BUCKET, Key=key, Body=data)


@pytest.fixture
def reference_objects(platform, s3):
    stored = StoredReferences(s3[0])
    yield stored
    stored.restore()


def test_missing_reference_scan_is_a_failed_row_naming_the_fix(platform, reference_objects):
    reference_objects.delete(CAM_A)
    runs = platform.run_check_cycle(HOUR_REF_MISSING, device_ids=[CAM_A, CAM_B, CAM_C])
    assert all(r.succeeded for r in runs)
    rows = rows_of(platform, HOUR_REF_MISSING)
    assert sorted(rows) == [CAM_A, CAM_B, CAM_C] and all(len(v) == 1 for v in rows.values())
    (row,) = rows[CAM_A]
    assert (row.success, row.status) == (False, CheckStatus.failed)
    assert row.failure_log == (
        f"{no_reference_reason(CAM_A)}no object s3://{BUCKET}/{reference_objects.prefix(CAM_A)}/manifest.json)"
    )
    assert row.files_location is not None  # the query capture itself was stored
    for device_id in (CAM_B, CAM_C):
        assert_measured(rows[device_id][0], device_id)
    sent = platform.send_alerts()
    text = message_for(sent, CAM_A)
    assert text.startswith(headline(row))
    assert f"reason: {no_reference_reason(CAM_A)}" in text
    assert len(sent) == 3


def test_corrupt_reference_scans_are_failed_rows_naming_the_fix(platform, site, reference_objects):
    from calmon_core.features import FEATURES_DIR, INDEX_FILE

    reference_objects.replace(CAM_A, "manifest.json", b"{ this is not a manifest")
    index = f"{FEATURES_DIR}/{INDEX_FILE}"
    reference_objects.replace(CAM_C, index, reference_objects.get(CAM_C, index)[:4096])
    cache_c = site.root / "work" / "cache" / "city" / CAM_C / "reference_scan"
    shutil.rmtree(cache_c, ignore_errors=True)  # a worker fetching cam-c's scan afresh
    runs = platform.run_check_cycle(HOUR_REF_CORRUPT, device_ids=[CAM_A, CAM_B, CAM_C])
    assert all(r.succeeded for r in runs)
    rows = rows_of(platform, HOUR_REF_CORRUPT)
    assert sorted(rows) == [CAM_A, CAM_B, CAM_C] and all(len(v) == 1 for v in rows.values())
    (garbage,) = rows[CAM_A]
    assert (garbage.success, garbage.status) == (False, CheckStatus.failed)
    assert garbage.failure_log.startswith(no_reference_reason(CAM_A))
    assert garbage.failure_log.endswith(
        "reference_scan/manifest.json: not valid JSON "
        "(Expecting property name enclosed in double quotes: line 1 column 3 (char 2)))"
    )
    (truncated_row,) = rows[CAM_C]
    assert (truncated_row.success, truncated_row.status) == (False, CheckStatus.failed)
    assert truncated_row.failure_log == (
        f"{no_reference_reason(CAM_C)}reference scan {cache_c}: BadZipFile: File is not a zip file)"
    )
    assert not cache_c.exists()  # the corrupt copy is dropped: a repaired scan is fetched next time
    assert_measured(rows[CAM_B][0], CAM_B)
    sent = platform.send_alerts()
    for row in (garbage, truncated_row):
        text = message_for(sent, row.device_id)
        assert text.startswith(headline(row))
        assert f"reason: {no_reference_reason(row.device_id)}" in text
    assert message_for(sent, CAM_B).startswith(headline(rows[CAM_B][0])) and len(sent) == 3


# --------------------------------------------------------------------------- 6. devices.yaml edited


def tick(platform, moment: datetime, config_dir) -> list[dg.RunRequest]:
    """What the daemon does at a tick: the sync_devices sensor, then the check schedule."""
    site_resource = SiteConfigResource(config_dir=str(config_dir))
    with dg.build_sensor_context(instance=platform.instance, resources={"site": site_resource}) as context:
        result = sync_devices_sensor(context)
    for request in getattr(result, "dynamic_partitions_requests", None) or []:
        platform.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    schedule = platform.defs.resolve_schedule_def("calibration_check_schedule")
    with dg.build_schedule_context(
        instance=platform.instance,
        scheduled_execution_time=moment,
        resources={**platform.resources, "site": site_resource},
        repository_def=platform.defs.get_repository_def(),
    ) as context:
        return list(schedule.evaluate_tick(context).run_requests or [])


def launch(platform, requests: list[dg.RunRequest]) -> list[bool]:
    """The runs the daemon would launch for these requests, in parallel."""
    job = platform.defs.resolve_job_def("calibration_check")

    def run(request: dg.RunRequest) -> bool:
        return job.execute_in_process(
            partition_key=request.partition_key, tags=request.tags, instance=platform.instance, raise_on_error=False
        ).success

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(run, requests))


def test_devices_yaml_edited_between_ticks(platform, site, flaky_cycle):
    path = site.config_dir / "devices.yaml"
    original = path.read_text()
    rows_before = [r for r in table(platform).all_rows() if r.device_id == CAM_B]
    try:
        write_devices(site, without=[CAM_B])  # cam-b removed, cam-new added
        key_1 = current_time_key(TICK_1)
        requests = tick(platform, TICK_1, site.config_dir)
        # one run per deployment, tagged with it: the new device is checked with its deployment
        assert sorted(str(r.partition_key) for r in requests) == [f"{d}|{key_1}" for d in ("city", "harbor")]
        assert {str(r.partition_key).split("|")[0]: r.tags["calmon/deployment"] for r in requests} == {
            "city": "city",
            "harbor": "harbor",
        }
        assert all(launch(platform, requests))
        rows = rows_of(platform, key_1)
        assert sorted(rows) == [CAM_A, CAM_C, CAM_NEW] and all(len(v) == 1 for v in rows.values())
        (new,) = rows[CAM_NEW]
        assert (new.success, new.status) == (False, CheckStatus.failed)
        assert new.failure_log == (
            f"{no_reference_reason(CAM_NEW)}no object "
            f"s3://{BUCKET}/{reference_scan_prefix('harbor', CAM_NEW)}/manifest.json)"
        )
        for device_id in (CAM_A, CAM_C):
            assert_measured(rows[device_id][0], device_id)
        # the removed device keeps its partition and its rows
        assert CAM_B in platform.instance.get_dynamic_partitions("devices")
        assert [r for r in table(platform).all_rows() if r.device_id == CAM_B] == rows_before != []
        sent = platform.send_alerts()
        assert sorted(t.splitlines()[0] for t in sent) == sorted(headline(rows[d][0]) for d in rows)

        # the user follows the advice; the next tick measures the new device
        fresh = site.platform()  # `calmon collect-references` reads the edited file
        with site.fleet.calibrated([CAM_NEW]):
            collected = fresh.collect_references([CAM_NEW])
        assert [r.succeeded for r in collected] == [True]
        key_2 = current_time_key(TICK_2)
        requests = tick(platform, TICK_2, site.config_dir)
        assert sorted(str(r.partition_key) for r in requests) == [f"{d}|{key_2}" for d in ("city", "harbor")]
        assert all(launch(platform, requests))
        rows = rows_of(platform, key_2)
        assert sorted(rows) == [CAM_A, CAM_C, CAM_NEW] and all(len(v) == 1 for v in rows.values())
        for device_id, (row,) in rows.items():
            assert_measured(row, device_id)
        assert message_for(platform.send_alerts(), CAM_NEW).startswith(headline(rows[CAM_NEW][0]))
    finally:
        path.write_text(original)


# --------------------------------------------------------------------------- 7. unsafe device ids


@pytest.mark.parametrize("bad_id", ["../cam-c", "city/cam-c"])
def test_unsafe_device_id_refused_at_load_and_nothing_requested(platform, site, tmp_path, bad_id):
    config_dir = tmp_path / "configs"
    shutil.copytree(site.config_dir, config_dir)
    doc = yaml.safe_load((config_dir / "devices.yaml").read_text())
    assert doc["deployments"][1]["devices"][0]["id"] == CAM_C
    doc["deployments"][1]["devices"][0]["id"] = bad_id
    (config_dir / "devices.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    result = subprocess.run(
        [sys.executable, "-m", "calmon_cli", "validate-config", str(config_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert (
        f"{config_dir / 'devices.yaml'}: deployments[1].devices[0].id: Value error, device id "
        f"{bad_id!r} is not a safe path segment"
    ) in result.stderr
    partitions = set(platform.instance.get_dynamic_partitions("devices"))
    assert tick(platform, TICK_1 + timedelta(hours=5), config_dir) == []  # no runs requested
    assert set(platform.instance.get_dynamic_partitions("devices")) == partitions
