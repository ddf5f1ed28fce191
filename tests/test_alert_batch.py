"""The slack_alerts sensor decides a whole batch of new results at once: each result still on its own
device's history and on its own partition's result before it (a real Dagster instance, a real
results table, a real webhook)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from calmon_assets.defs.alerts.sensors import OFFSETS, alerts_for_new_results
from calmon_assets.defs.checks.asset_checks import CHECKS_KEY
from calmon_assets.defs.partitions import check_partition_key
from calmon_core.alerts import AlertPolicy
from calmon_core.check import failed_check
from calmon_core.config import ResultsSettings
from calmon_core.models import CalibrationResult, CheckStatus
from resources.results_table import ResultsTable
from resources.slack import SlackNotifier
from tests.servers import ScriptedWebhook

HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def time_key(hour: int) -> str:
    return (HOUR + timedelta(hours=hour)).strftime("%Y-%m-%d-%H:%M")


def row(device: str, hour: int, yaw: float) -> CalibrationResult:
    return CalibrationResult(
        deployment_name="harbor",
        device_id=device,
        timestamp=HOUR + timedelta(hours=hour, minutes=5),
        check_partition=time_key(hour),
        yaw_offset=yaw,
        pitch_offset=0.0,
        roll_offset=0.0,
        yaw_uncertainty=0.004,
        pitch_uncertainty=0.004,
        roll_uncertainty=0.004,
        success=True,
        status=CheckStatus.breach if abs(yaw) > 0.5 else CheckStatus.ok,
        inliers=300,
        frames_used=3,
        capture_positions="[]",
        files_location=f"s3://camera-calibration-monitoring/harbor/{device}/query_scan/x",
        algorithm_version="test-1",
        run_id=f"run-{device}-{hour}",
    )


def report(instance: dg.DagsterInstance, device: str, hour: int, status: str) -> int:
    """A calibration_offsets result of (device, hour) alone in its deployment's partition; its storage id."""
    return report_deployment(instance, hour, {device: status})


def report_deployment(instance: dg.DagsterInstance, hour: int, statuses: dict[str, str]) -> int:
    """A calibration_offsets result of harbor's partition at `hour`, holding these devices'
    results; its storage id."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=OFFSETS,
            partition=str(check_partition_key("harbor", time_key(hour))),
            metadata={
                "status": "breach" if "breach" in statuses.values() else "ok",
                CHECKS_KEY: dg.MetadataValue.json({device: {"status": status} for device, status in statuses.items()}),
            },
        )
    )
    return instance.fetch_materializations(OFFSETS, limit=1).records[0].storage_id


def new_table(tmp_path) -> ResultsTable:
    return ResultsTable(ResultsSettings(warehouse=str(tmp_path / "warehouse"), sqlite_path=str(tmp_path / "c.db")))


def test_a_batch_is_decided_result_by_result(tmp_path):
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    table = ResultsTable(ResultsSettings(warehouse=str(tmp_path / "warehouse"), sqlite_path=str(tmp_path / "c.db")))
    table.write(
        [row("cam-a", 0, 0.8), row("cam-a", 1, 0.1), row("cam-b", 1, 0.05)]
        + [
            failed_check(
                deployment_name="harbor",
                device_id="cam-c",
                check_partition=time_key(1),
                reason="capture failed: camera offline",
                mode="passive",
                timestamp=HOUR + timedelta(hours=1, minutes=5),
            )
        ]
    )
    report(instance, "cam-a", 0, "breach")
    cursor = report(instance, "cam-b", 1, "ok")  # alerted by an earlier tick
    report(instance, "cam-b", 1, "ok")  # the same check re-run, the same status: not news
    report(instance, "cam-a", 1, "ok")  # back within threshold after its breach: recovered
    report(instance, "cam-c", 1, "failed")
    report(instance, "cam-c", 1, "failed")  # its retry failed the same way, in the same batch
    webhook = ScriptedWebhook()
    try:
        new_cursor, sent = alerts_for_new_results(
            instance, cursor, table, SlackNotifier(webhook.url, echo=None), AlertPolicy()
        )
    finally:
        webhook.stop()
    assert new_cursor == str(instance.fetch_materializations(OFFSETS, limit=1).records[0].storage_id)
    assert len(sent) == 2 and webhook.texts() == sent
    assert "cam-a" in sent[0] and "recovered" in sent[0].lower()
    assert "cam-c" in sent[1] and "camera offline" in sent[1]
    instance.dispose()


def test_an_outage_inside_a_deployment_resends_none_of_its_delivered_results(tmp_path):
    """One materialization holds a deployment's results; Slack going down at its second device
    leaves the cursor inside it: the next tick posts the second and third, not the first again."""
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    table = new_table(tmp_path)
    table.write([row("cam-a", 0, 0.8), row("cam-b", 0, -0.9), row("cam-c", 0, 0.7)])
    storage_id = report_deployment(instance, 0, {"cam-a": "breach", "cam-b": "breach", "cam-c": "breach"})
    policy = AlertPolicy()  # a message per check
    # the first message goes through; the second meets a Slack down for all its attempts
    webhook = ScriptedWebhook(script=[(200, {})] + [(503, {})] * 2)
    try:
        notifier = SlackNotifier(webhook.url, echo=None, max_attempts=2, backoff_seconds=0.0)
        cursor, sent = alerts_for_new_results(instance, "0", table, notifier, policy)
        assert len(sent) == 1 and "cam-a" in sent[0]
        assert cursor == "0:cam-a"  # before the record, but past its first device
        cursor, sent = alerts_for_new_results(instance, cursor, table, notifier, policy)
    finally:
        webhook.stop()
    assert [("cam-b" in t, "cam-c" in t) for t in sent] == [(True, False), (False, True)]
    assert cursor == str(storage_id)
    assert sum("cam-a" in r.payload.get("text", "") for r in webhook.requests) == 1
    instance.dispose()


def test_results_of_the_device_partitions_checks_had_before_are_still_alerted(tmp_path):
    """A materialization of a device x time partition (an instance from before deployments x time)
    is one device's result, alerted as before."""
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    table = new_table(tmp_path)
    table.write([row("cam-a", 0, 0.8)])
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=OFFSETS, partition=f"cam-a|{time_key(0)}", metadata={"status": "breach"})
    )
    webhook = ScriptedWebhook()
    try:
        policy = AlertPolicy()
        _, sent = alerts_for_new_results(instance, 0, table, SlackNotifier(webhook.url, echo=None), policy)
    finally:
        webhook.stop()
    assert len(sent) == 1 and "cam-a" in sent[0] and "🚨" in sent[0]
    instance.dispose()


def test_a_tick_decides_a_bounded_number_of_results_and_the_next_goes_on(tmp_path):
    """A fleet's cycle can hold more results than one tick should decide: the cursor stops inside
    the deployment's results and the next call posts the rest, each once."""
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    table = new_table(tmp_path)
    table.write([row("cam-a", 0, 0.8), row("cam-b", 0, -0.9), row("cam-c", 0, 0.7)])
    first = report_deployment(instance, 0, {"cam-a": "breach", "cam-b": "breach"})
    second = report_deployment(instance, 1, {"cam-c": "breach"})
    table.write([row("cam-c", 1, 0.7)])
    webhook = ScriptedWebhook()
    try:
        notifier = SlackNotifier(webhook.url, echo=None)
        cursor, sent = alerts_for_new_results(instance, 0, table, notifier, AlertPolicy(), max_results=1)
        assert cursor == "0:cam-a" and [("cam-a" in t) for t in sent] == [True]
        cursor, sent = alerts_for_new_results(instance, cursor, table, notifier, AlertPolicy(), max_results=1)
        assert cursor == str(first) and [("cam-b" in t) for t in sent] == [True]
        cursor, sent = alerts_for_new_results(instance, cursor, table, notifier, AlertPolicy(), max_results=1)
        assert cursor == str(second) and [("cam-c" in t) for t in sent] == [True]
        assert alerts_for_new_results(instance, cursor, table, notifier, AlertPolicy(), max_results=1) == (cursor, [])
    finally:
        webhook.stop()
    assert len(webhook.requests) == 3
    instance.dispose()
