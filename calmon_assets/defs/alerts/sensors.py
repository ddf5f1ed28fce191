"""The slack_alerts sensor: one Slack message per new check result, decided by calmon_core.alerts."""

from __future__ import annotations

import logging

import dagster as dg

from calmon_assets.defs.checks.failed_runs import FAILED_RUN_KEY
from calmon_assets.defs.partitions import DEVICE_DIM, TIME_DIM, check_partitions
from calmon_assets.defs.runs import BACKFILL_TAG, REALERT_TAG
from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.alerts import AlertPolicy, ResultOrigin, decide_alert, skip_reason
from resources.results_table import ResultsTableResource
from resources.slack import SlackResource

OFFSETS = dg.AssetKey("calibration_offsets")
# One cursor in the instance's key-value store, shared by the sensor (daemon) and `calmon monitor`,
# so a result is alerted once whichever of them sees it first.
SLACK_CURSOR_KEY = "calmon/slack_alerts_cursor"


def send_pending_alerts(instance: dg.DagsterInstance, results_table, slack, policy: AlertPolicy, log=None) -> list[str]:
    storage = instance.run_storage
    cursor = int(storage.get_cursor_values({SLACK_CURSOR_KEY}).get(SLACK_CURSOR_KEY) or 0)
    new_cursor, sent = alerts_for_new_results(instance, cursor, results_table, slack, policy, log=log)
    if new_cursor != cursor:  # an unchanged cursor stays as it was (unset, too): nothing moved
        storage.set_cursor_values({SLACK_CURSOR_KEY: str(new_cursor)})
    return sent


def _status(materialization: dg.AssetMaterialization | None) -> str | None:
    value = materialization.metadata.get("status") if materialization is not None else None
    return value.value if value is not None else None  # type: ignore[return-value]


def result_origin(instance: dg.DagsterInstance, record) -> ResultOrigin:
    """What alerting needs to know about where a calibration_offsets materialization came from."""
    materialization = record.asset_materialization
    failed_run = materialization.metadata.get(FAILED_RUN_KEY)
    run_id = record.run_id or (failed_run.value if failed_run is not None else None)
    run = instance.get_run_by_id(run_id) if run_id else None
    tags = run.tags if run else {}
    origin = ResultOrigin(
        backfill=bool(tags.get(BACKFILL_TAG)), realert=tags.get(REALERT_TAG) == "true", status=_status(materialization)
    )
    if skip_reason(origin) is not None or origin.realert:
        return origin
    earlier = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=OFFSETS, asset_partitions=[materialization.partition], before_storage_id=record.storage_id
        ),
        limit=1,
    ).records
    previous = _status(earlier[0].asset_materialization) if earlier else None
    return ResultOrigin(backfill=origin.backfill, realert=False, status=origin.status, previous_status=previous)


# Rows of a device's history an alert is decided on: a recovery needs the last decided check; the
# state_change policy folds the device's state (breach evidence, forecast window of 72 checks).
RECOVERY_HISTORY_ROWS = 50
STATE_HISTORY_ROWS = 200


def _history(results_table, device_id: str, policy: AlertPolicy):
    """The device's earlier rows, read only if iterated (decide_alert needs them for an ok result,
    and with state_change for every result)."""
    yield from results_table.history(
        device_id, limit=STATE_HISTORY_ROWS if policy.state_change else RECOVERY_HISTORY_ROWS
    )


def alerts_for_new_results(
    instance: dg.DagsterInstance, cursor: int, results_table, slack, policy: AlertPolicy, limit: int = 200, log=None
) -> tuple[int, list[str]]:
    """Post one Slack message per new calibration_offsets materialization after `cursor`; returns
    the new cursor and the texts sent. Which results are alerted, and how, calmon_core.alerts says.

    When Slack (or the network) is down, the cursor stops before that result: the next call posts
    it and everything after it, so an outage delays messages instead of losing them.
    """
    log = log or logging.getLogger(__name__)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=OFFSETS, after_storage_id=cursor), limit=limit, ascending=True
    ).records
    sent: list[str] = []
    for record in records:
        before_record, cursor = cursor, max(cursor, record.storage_id)
        materialization = record.asset_materialization
        if materialization is None or "|" not in (materialization.partition or ""):
            continue
        keys = check_partitions.get_partition_key_from_str(materialization.partition).keys_by_dimension
        device_id, time_key = keys[DEVICE_DIM], keys[TIME_DIM]
        origin = result_origin(instance, record)
        if (reason := skip_reason(origin)) is not None:
            log.info(f"{device_id} {time_key}: {reason}, no alert")
            continue
        row = results_table.read(device_id, time_key)
        if row is None:
            continue
        alert = decide_alert(row, _history(results_table, device_id, policy), policy, origin)
        if alert is None:
            continue
        outcome = slack.send(alert.text)
        if outcome.worth_retrying_later:
            log.warning(
                f"{device_id} {time_key}: Slack message not delivered, kept for the next attempt: {outcome.error}"
            )
            return before_record, sent
        if not outcome.delivered:
            log.warning(f"{device_id} {time_key}: Slack message not delivered: {outcome.error}")
        sent.append(alert.text)
    return cursor, sent


@dg.sensor(
    name="slack_alerts",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts 🚨 breach / ✅ ok / ⚠️ inconclusive / ❌ failed / recovered for each new "
    "calibration_offsets result to the calibration_monitoring channel.",
)
def slack_alerts_sensor(
    context: dg.SensorEvaluationContext,
    site: SiteConfigResource,
    results_table: ResultsTableResource,
    slack: SlackResource,
):
    settings = site.load().settings
    policy = AlertPolicy(files_base_url=settings.slack.files_base_url, settings=settings.alerts)
    sent = send_pending_alerts(
        context.instance, results_table.get_client(), slack.get_client(), policy, log=context.log
    )
    return dg.SkipReason(f"{len(sent)} Slack message(s) sent")
