"""The slack_alerts sensor: one Slack message per new check result, decided by calmon_core.alerts."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dagster as dg

from calmon_assets.defs.checks.asset_checks import CHECKS_KEY
from calmon_assets.defs.checks.failed_runs import FAILED_RUN_KEY
from calmon_assets.defs.partitions import check_partition_parts
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
    cursor = storage.get_cursor_values({SLACK_CURSOR_KEY}).get(SLACK_CURSOR_KEY) or "0"
    new_cursor, sent = alerts_for_new_results(instance, cursor, results_table, slack, policy, log=log)
    if new_cursor != cursor:  # an unchanged cursor stays as it was (unset, too): nothing moved
        storage.set_cursor_values({SLACK_CURSOR_KEY: new_cursor})
    return sent


@dataclass(frozen=True)
class AlertCursor:
    """How far alerting got: every result up to storage id `through`, and in the next one the
    devices up to `device` (in device order), so a Slack outage in the middle of a deployment's
    results resends none of the ones delivered."""

    through: int = 0
    device: str | None = None

    @classmethod
    def parse(cls, text: str | int | None) -> AlertCursor:
        through, _, device = str(text or "0").partition(":")
        return cls(int(through) if through.isdigit() else 0, device or None)

    def __str__(self) -> str:
        return f"{self.through}:{self.device}" if self.device else str(self.through)


def _status(materialization: dg.AssetMaterialization | None) -> str | None:
    value = materialization.metadata.get("status") if materialization is not None else None
    return value.value if value is not None else None  # type: ignore[return-value]


def result_entries(materialization: dg.AssetMaterialization | None) -> list[tuple[str, str, str | None]]:
    """(device, time key, status) of each check result a calibration_offsets materialization holds,
    in device order: one per device of its deployment; one for a materialization of the device x
    time partitions checks had before; none for anything else."""
    if materialization is None or (parts := check_partition_parts(materialization.partition or "")) is None:
        return []
    first, time_key = parts
    checks = materialization.metadata.get(CHECKS_KEY)
    if checks is None:
        return [(first, time_key, _status(materialization))]
    values = checks.value if isinstance(checks.value, dict) else {}
    return [(device, time_key, (info or {}).get("status")) for device, info in sorted(values.items())]


def result_origins(instance: dg.DagsterInstance, records: list) -> dict[tuple[int, str], ResultOrigin]:
    """What alerting needs to know about where each check result came from, by (storage id of its
    calibration_offsets materialization, device): the runs in one query, the partitions' earlier
    results in a few."""
    run_ids: dict[int, str] = {}
    for record in records:
        failed_run = record.asset_materialization.metadata.get(FAILED_RUN_KEY)
        run_id = record.run_id or (failed_run.value if failed_run is not None else None)
        if run_id:
            run_ids[record.storage_id] = run_id
    runs = {}
    if run_ids:
        runs = {run.run_id: run for run in instance.get_runs(dg.RunsFilter(run_ids=sorted(set(run_ids.values()))))}
    origins: dict[tuple[int, str], ResultOrigin] = {}
    pending = []
    for record in records:
        run = runs.get(run_ids.get(record.storage_id, ""))
        tags = run.tags if run else {}
        for device_id, _, status in result_entries(record.asset_materialization):
            origin = ResultOrigin(
                backfill=bool(tags.get(BACKFILL_TAG)), realert=tags.get(REALERT_TAG) == "true", status=status
            )
            origins[(record.storage_id, device_id)] = origin
            if skip_reason(origin) is None and not origin.realert:
                pending.append((record, device_id))
    earlier = _earlier_results(instance, pending)
    for record, device_id in pending:
        origin = origins[(record.storage_id, device_id)]
        origins[(record.storage_id, device_id)] = ResultOrigin(
            backfill=origin.backfill,
            realert=False,
            status=origin.status,
            previous_status=earlier.get((record.storage_id, device_id)),
        )
    return origins


EARLIER_RESULTS_PAGE = 1000


def _earlier_results(instance: dg.DagsterInstance, pending: list) -> dict[tuple[int, str], str | None]:
    """For each (record, device), the status of that device's result in its partition just before
    the record (by storage id)."""
    if not pending:
        return {}
    partitions = sorted({record.asset_materialization.partition for record, _ in pending})
    newest = max(record.storage_id for record, _ in pending)
    # every result of these partitions older than the newest record: a partition has a few (a re-run,
    # a failure then a retry), so this is a small multiple of the records
    by_partition: dict[str, list[tuple[int, dict[str, str | None]]]] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=OFFSETS, asset_partitions=partitions, before_storage_id=newest),
            limit=EARLIER_RESULTS_PAGE,
            cursor=cursor,
        )
        for found in page.records:
            statuses = {device: status for device, _, status in result_entries(found.asset_materialization)}
            by_partition.setdefault(found.asset_materialization.partition, []).append((found.storage_id, statuses))
        if not page.has_more:
            break
        cursor = page.cursor
    earlier: dict[tuple[int, str], str | None] = {}
    for record, device_id in pending:
        before = [
            (storage_id, statuses[device_id])
            for storage_id, statuses in by_partition.get(record.asset_materialization.partition, [])
            if storage_id < record.storage_id and device_id in statuses
        ]
        earlier[(record.storage_id, device_id)] = max(before)[1] if before else None
    return earlier


# Rows of a device's history an alert is decided on: a recovery needs the last decided check; the
# state_change policy folds the device's state (breach evidence, forecast window of 72 checks).
RECOVERY_HISTORY_ROWS = 50
STATE_HISTORY_ROWS = 200
# Results one call decides: under state_change 14-27 ms each with a week of history, so a
# 1,000-camera cycle is decided in 4 ticks of at most 3.4 s (benchmarks/results/alert_tick_deployment_hour.txt)
# instead of one over 10 s.
MAX_RESULTS_PER_TICK = 250


def alerts_for_new_results(
    instance: dg.DagsterInstance,
    cursor: str | int,
    results_table,
    slack,
    policy: AlertPolicy,
    limit: int = 200,
    log=None,
    max_results: int | None = None,
) -> tuple[str, list[str]]:
    """Post one Slack message per new check result (a device's, in a calibration_offsets
    materialization after `cursor`); returns the new cursor and the texts sent. Which results are
    alerted, and how, calmon_core.alerts says. The batch's rows and their devices' histories are
    read together, before the first message.

    When Slack (or the network) is down, the cursor stops before that result: the next call posts
    it and everything after it, so an outage delays messages instead of losing them. At most
    `max_results` results (MAX_RESULTS_PER_TICK by default) are decided per call, the cursor
    stopping inside a deployment's results if it must: a tick stays short whatever the fleet's
    size, and the next tick goes on.
    """
    log = log or logging.getLogger(__name__)
    position = AlertCursor.parse(cursor)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=OFFSETS, after_storage_id=position.through), limit=limit, ascending=True
    ).records
    entries = {record.storage_id: result_entries(record.asset_materialization) for record in records}
    if position.device is not None and records:  # the first record was left part-way
        first = records[0].storage_id
        entries[first] = [entry for entry in entries[first] if entry[0] > position.device]
    records, partial = _within(records, entries, MAX_RESULTS_PER_TICK if max_results is None else max_results)
    checked = [record for record in records if entries[record.storage_id]]
    origins = result_origins(instance, checked)
    alerted = {
        (record.storage_id, device_id): (device_id, time_key)
        for record in checked
        for device_id, time_key, _ in entries[record.storage_id]
        if skip_reason(origins[(record.storage_id, device_id)]) is None
    }
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
        for device_id, time_key, _ in entries[record.storage_id]:
            origin = origins[(record.storage_id, device_id)]
            if (reason := skip_reason(origin)) is not None:
                log.info(f"{device_id} {time_key}: {reason}, no alert")
                position = AlertCursor(position.through, device_id)
                continue
            row = rows.get((device_id, time_key))
            alert = decide_alert(row, histories.get(device_id, []), policy, origin) if row is not None else None
            if alert is not None:
                outcome = slack.send(alert.text)
                if outcome.worth_retrying_later:
                    log.warning(
                        f"{device_id} {time_key}: Slack message not delivered, kept for the next attempt: {outcome.error}"
                    )
                    return str(position), sent
                if not outcome.delivered:
                    log.warning(f"{device_id} {time_key}: Slack message not delivered: {outcome.error}")
                sent.append(alert.text)
            position = AlertCursor(position.through, device_id)
        if record.storage_id != partial:
            position = AlertCursor(max(position.through, record.storage_id))
    return str(position), sent


def _within(records: list, entries: dict[int, list], budget: int) -> tuple[list, int | None]:
    """The records whose results fit in `budget`, the last of them cut to fit (its storage id, or
    None when none was cut); `entries` is cut in place."""
    kept = []
    for record in records:
        items = entries[record.storage_id]
        if len(items) > budget:
            if budget > 0:
                entries[record.storage_id] = items[:budget]
                kept.append(record)
                return kept, record.storage_id
            return kept, None
        budget -= len(items)
        kept.append(record)
    return kept, None


@dg.sensor(
    name="slack_alerts",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts 🚨 breach / ✅ ok / ⚠️ inconclusive / ❌ failed / recovered for each device's "
    "new calibration_offsets result to the calibration_monitoring channel.",
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
