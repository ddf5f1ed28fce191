"""The slack_alerts sensor: one Slack message per new check result, decided by calmon_core.alerts."""

from __future__ import annotations

import logging

import dagster as dg

from calmon_assets.defs.checks.failed_runs import FAILED_RUN_KEY
from calmon_assets.defs.partitions import DEVICE_DIM, TIME_DIM, check_partitions
from calmon_assets.defs.runs import BACKFILL_TAG, REALERT_TAG
from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.alerts import AlertPolicy, ResultOrigin, decide_alert, skip_reason
from calmon_core.models import CheckStatus
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


def result_origins(instance: dg.DagsterInstance, records: list) -> dict[int, ResultOrigin]:
    """What alerting needs to know about where each calibration_offsets materialization came from,
    by storage id: the runs in one query, the partitions' earlier results in a few."""
    run_ids: dict[int, str] = {}
    for record in records:
        failed_run = record.asset_materialization.metadata.get(FAILED_RUN_KEY)
        run_id = record.run_id or (failed_run.value if failed_run is not None else None)
        if run_id:
            run_ids[record.storage_id] = run_id
    runs = {}
    if run_ids:
        runs = {run.run_id: run for run in instance.get_runs(dg.RunsFilter(run_ids=sorted(set(run_ids.values()))))}
    origins: dict[int, ResultOrigin] = {}
    pending = []
    for record in records:
        run = runs.get(run_ids.get(record.storage_id, ""))
        tags = run.tags if run else {}
        origin = ResultOrigin(
            backfill=bool(tags.get(BACKFILL_TAG)),
            realert=tags.get(REALERT_TAG) == "true",
            status=_status(record.asset_materialization),
        )
        origins[record.storage_id] = origin
        if skip_reason(origin) is None and not origin.realert:
            pending.append(record)
    earlier = _earlier_results(instance, pending)
    for record in pending:
        origin = origins[record.storage_id]
        previous = earlier.get(record.storage_id)
        origins[record.storage_id] = ResultOrigin(
            backfill=origin.backfill, realert=False, status=origin.status, previous_status=previous
        )
    return origins


EARLIER_RESULTS_PAGE = 1000


def _earlier_results(instance: dg.DagsterInstance, records: list) -> dict[int, str | None]:
    """For each record, the status of the result of its partition just before it (by storage id)."""
    if not records:
        return {}
    partitions = sorted({record.asset_materialization.partition for record in records})
    newest = max(record.storage_id for record in records)
    # every result of these partitions older than the newest record: a partition has a few (a re-run,
    # a failure then a retry), so this is a small multiple of the records
    by_partition: dict[str, list[tuple[int, str | None]]] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=OFFSETS, asset_partitions=partitions, before_storage_id=newest),
            limit=EARLIER_RESULTS_PAGE,
            cursor=cursor,
        )
        for found in page.records:
            by_partition.setdefault(found.asset_materialization.partition, []).append(
                (found.storage_id, _status(found.asset_materialization))
            )
        if not page.has_more:
            break
        cursor = page.cursor
    earlier: dict[int, str | None] = {}
    for record in records:
        before = [
            (storage_id, status)
            for storage_id, status in by_partition.get(record.asset_materialization.partition, [])
            if storage_id < record.storage_id
        ]
        earlier[record.storage_id] = max(before)[1] if before else None
    return earlier


# Rows of a device's history an alert is decided on: a recovery needs the last decided check; the
# state_change policy folds the device's state (breach evidence, forecast window of 72 checks).
RECOVERY_HISTORY_ROWS = 50
STATE_HISTORY_ROWS = 200


def alerts_for_new_results(
    instance: dg.DagsterInstance, cursor: int, results_table, slack, policy: AlertPolicy, limit: int = 200, log=None
) -> tuple[int, list[str]]:
    """Post one Slack message per new calibration_offsets materialization after `cursor`; returns
    the new cursor and the texts sent. Which results are alerted, and how, calmon_core.alerts says.
    The batch's rows and their devices' histories are read together, before the first message.

    When Slack (or the network) is down, the cursor stops before that result: the next call posts
    it and everything after it, so an outage delays messages instead of losing them.
    """
    log = log or logging.getLogger(__name__)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=OFFSETS, after_storage_id=cursor), limit=limit, ascending=True
    ).records
    checks = {}  # storage id -> (device, time key) of the records that are check results
    for record in records:
        materialization = record.asset_materialization
        if materialization is None or "|" not in (materialization.partition or ""):
            continue
        keys = check_partitions.get_partition_key_from_str(materialization.partition).keys_by_dimension
        checks[record.storage_id] = (keys[DEVICE_DIM], keys[TIME_DIM])
    origins = result_origins(instance, [record for record in records if record.storage_id in checks])
    alerted = {sid: key for sid, key in checks.items() if skip_reason(origins[sid]) is None}
    rows = results_table.read_many(alerted.values())
    # an ok result needs its device's earlier rows (a recovery); with state_change every result does
    needs_history = {
        device_id
        for device_id, time_key in alerted.values()
        if (row := rows.get((device_id, time_key))) is not None
        and (policy.state_change or CheckStatus(row.status) is CheckStatus.ok)
    }
    limit_rows = STATE_HISTORY_ROWS if policy.state_change else RECOVERY_HISTORY_ROWS
    histories = results_table.histories(needs_history, limit_rows) if needs_history else {}
    sent: list[str] = []
    for record in records:
        before_record, cursor = cursor, max(cursor, record.storage_id)
        if record.storage_id not in checks:
            continue
        device_id, time_key = checks[record.storage_id]
        origin = origins[record.storage_id]
        if (reason := skip_reason(origin)) is not None:
            log.info(f"{device_id} {time_key}: {reason}, no alert")
            continue
        row = rows.get((device_id, time_key))
        if row is None:
            continue
        alert = decide_alert(row, histories.get(device_id, []), policy, origin)
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
