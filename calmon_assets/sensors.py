"""Sensors: device sync from devices.yaml, Slack alerts for new results, and failed-run rows."""

import logging

import dagster as dg

from calmon_assets.devices import plan_device_sync
from calmon_assets.jobs import REALERT_TAG, calibration_check_job
from calmon_assets.partitions import (
    DEVICE_DIM,
    TIME_DIM,
    check_partition_key,
    check_partitions,
    device_partitions,
)
from calmon_assets.site import SiteConfigResource
from calmon_core.alerts import format_slack_message
from calmon_core.check_result import failed_check
from calmon_core.config import ConfigError
from calmon_core.models import CheckStatus
from resources.results_table import ResultsTableResource
from resources.slack import SlackResource

BACKFILL_TAG = "dagster/backfill"
# One cursor in the instance's key-value store, shared by the sensor (daemon) and `calmon monitor`,
# so a result is alerted once whichever of them sees it first.
SLACK_CURSOR_KEY = "calmon/slack_alerts_cursor"
# On the materialization record_failed_run reports for a run that died: that run's id (the report
# itself belongs to no run), so its tags still decide whether the result is alerted.
FAILED_RUN_KEY = "failed_run_id"


def send_pending_alerts(instance: dg.DagsterInstance, results_table, slack, files_base_url=None, log=None) -> list[str]:
    storage = instance.run_storage
    cursor = int(storage.get_cursor_values({SLACK_CURSOR_KEY}).get(SLACK_CURSOR_KEY) or 0)
    new_cursor, sent = alerts_for_new_results(instance, cursor, results_table, slack, files_base_url, log=log)
    if new_cursor != cursor:  # an unchanged cursor stays as it was (unset, too): nothing moved
        storage.set_cursor_values({SLACK_CURSOR_KEY: str(new_cursor)})
    return sent


@dg.sensor(
    name="sync_devices",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a device partition for every device in devices.yaml. Devices removed from "
    "the file keep their partitions, so their history is never silently deleted.",
)
def sync_devices_sensor(context: dg.SensorEvaluationContext, site: SiteConfigResource):
    try:
        fleet = site.load().fleet
    except ConfigError as exc:
        return dg.SkipReason(f"devices.yaml is broken, partitions unchanged:\n{exc}")
    plan = plan_device_sync(context.instance, fleet)
    if plan.removed_from_config:
        context.log.info(f"not in devices.yaml any more (history kept): {plan.removed_from_config}")
    if not plan.added:
        return dg.SkipReason("device partitions already match devices.yaml")
    return dg.SensorResult(dynamic_partitions_requests=[device_partitions.build_add_request(plan.added)])


def alerts_for_new_results(
    instance: dg.DagsterInstance,
    cursor: int,
    results_table,
    slack,
    files_base_url: str | None = None,
    limit: int = 200,
    log=None,
) -> tuple[int, list[str]]:
    """Post one Slack message per new calibration_offsets materialization after `cursor`.

    Not re-alerted: backfill runs (unless tagged calmon/realert=true) and re-materializations of a
    partition whose status did not change. A device whose previous check breached and which is now
    within threshold gets a recovery message. Returns the new cursor and the texts sent.

    When Slack (or the network) is down, the cursor stops before that result: the next call posts
    it and everything after it, so an outage delays messages instead of losing them.
    """
    log = log or logging.getLogger(__name__)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("calibration_offsets"), after_storage_id=cursor),
        limit=limit,
        ascending=True,
    ).records
    sent: list[str] = []
    for record in records:
        before_record = cursor
        cursor = max(cursor, record.storage_id)
        materialization = record.asset_materialization
        if materialization is None or not materialization.partition:
            continue
        if "|" not in materialization.partition:
            continue
        keys = check_partitions.get_partition_key_from_str(materialization.partition)
        device_id = keys.keys_by_dimension[DEVICE_DIM]
        time_key = keys.keys_by_dimension[TIME_DIM]
        failed_run = materialization.metadata.get(FAILED_RUN_KEY)
        run_id = record.run_id or (failed_run.value if failed_run is not None else None)
        run = instance.get_run_by_id(run_id) if run_id else None
        tags = run.tags if run else {}
        realert = tags.get(REALERT_TAG) == "true"
        if tags.get(BACKFILL_TAG) and not realert:
            log.info(f"{device_id} {time_key}: backfill result, no alert")
            continue
        status_value = materialization.metadata.get("status")
        status = status_value.value if status_value is not None else None
        if not realert:
            earlier = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey("calibration_offsets"),
                    asset_partitions=[materialization.partition],
                    before_storage_id=record.storage_id,
                ),
                limit=1,
            ).records
            if earlier:
                previous = earlier[0].asset_materialization.metadata.get("status")
                if previous is not None and previous.value == status:
                    log.info(f"{device_id} {time_key}: same status as already alerted, no alert")
                    continue
        row = results_table.read(device_id, time_key)
        if row is None:
            continue
        recovered = False
        if CheckStatus(row.status) == CheckStatus.ok:
            history = [r for r in results_table.history(device_id, limit=50) if r.timestamp < row.timestamp]
            history.sort(key=lambda r: r.timestamp)
            decided = [r for r in history if CheckStatus(r.status) in (CheckStatus.ok, CheckStatus.breach)]
            recovered = bool(decided) and CheckStatus(decided[-1].status) == CheckStatus.breach
        files_url = None
        if row.files_location and files_base_url:
            files_url = files_base_url.rstrip("/") + "/" + row.files_location.split("://", 1)[-1].split("/", 1)[-1]
        text = format_slack_message(row, files_url=files_url or row.files_location, recovered=recovered)
        outcome = slack.send(text)
        if outcome.worth_retrying_later:
            log.warning(
                f"{device_id} {time_key}: Slack message not delivered, kept for the next attempt: {outcome.error}"
            )
            return before_record, sent
        if not outcome.delivered:
            log.warning(f"{device_id} {time_key}: Slack message not delivered: {outcome.error}")
        sent.append(text)
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
    sent = send_pending_alerts(
        context.instance,
        results_table.get_client(),
        slack.get_client(),
        files_base_url=settings.slack.files_base_url,
        log=context.log,
    )
    return dg.SkipReason(f"{len(sent)} Slack message(s) sent")


def run_failure_reason(events, fallback: str = "run failed") -> str:
    """Why a run failed, from its events: the first failed step's exception in its own words
    ("query_capture: services \"cam\" not found"), not "Execution of step ... failed"; `fallback`
    when no step failed (the run died outside its steps)."""
    event = next((e for e in events if e.is_step_failure), None)
    if event is None:
        return fallback
    error = getattr(event.event_specific_data, "error", None)
    if error is None:
        return event.message or "step failed"
    while error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
        error = error.cause
    return f"{event.step_key}: {error.message.strip()}"


def record_failed_run(
    instance: dg.DagsterInstance, run: dg.DagsterRun, reason: str, site_config, results_table
) -> bool:
    """Give a check whose run died unexpectedly its row (success = false), and its ❌.

    The row is reported as a materialization of calibration_offsets for the run's partition, so the
    ❌ goes out through the same cursor as every other result (held back while Slack is down, never
    sent twice) and the partition in the UI shows the failed row instead of nothing. Returns False
    when the run already wrote its own row (nothing to record).
    """
    device_id = run.tags.get(f"dagster/partition/{DEVICE_DIM}")
    time_key = run.tags.get(f"dagster/partition/{TIME_DIM}")
    if not device_id or not time_key:
        return False
    existing = results_table.read(device_id, time_key)
    if existing is not None and existing.run_id == run.run_id:
        return False
    try:
        deployment, device = site_config.fleet.find(device_id)
        deployment_name, mode = deployment.name, device.mode
    except KeyError:
        deployment_name, mode = run.tags.get("calmon/deployment", "unknown"), "passive"
    row = failed_check(
        deployment_name=deployment_name,
        device_id=device_id,
        check_partition=time_key,
        reason=f"check run {run.run_id[:8]} failed: {reason}",
        mode=mode,
        threshold_deg=site_config.settings.slack.threshold_deg,
        run_id=run.run_id,
    )
    results_table.write([row])
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="calibration_offsets",
            partition=str(check_partition_key(device_id, time_key)),
            description=f"recorded after run {run.run_id} failed",
            metadata={
                "status": CheckStatus.failed.value,
                "success": False,
                "deployment": deployment_name,
                "failure_log": row.failure_log or "",
                FAILED_RUN_KEY: run.run_id,
            },
        )
    )
    return True


@dg.run_failure_sensor(
    name="record_failed_checks",
    monitored_jobs=[calibration_check_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="An unexpected error still ends as a results row (success = false), reported as the "
    "partition's calibration_offsets result, so slack_alerts posts its ❌.",
)
def record_failed_checks_sensor(
    context: dg.RunFailureSensorContext,
    site: SiteConfigResource,
    results_table: ResultsTableResource,
):
    logs = context.instance.all_logs(context.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    message = run_failure_reason(
        [entry.dagster_event for entry in logs if entry.dagster_event is not None],
        fallback=context.failure_event.message if context.failure_event else "run failed",
    )
    record_failed_run(context.instance, context.dagster_run, message, site.load(), results_table.get_client())


@dg.sensor(
    name="fail_dead_check_runs",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A check run whose worker died (killed, crashed, its machine lost) is marked failed, "
    "so record_failed_checks writes its row and slack_alerts its ❌, and its deployment's slot frees.",
)
def fail_dead_check_runs_sensor(context: dg.SensorEvaluationContext, site: SiteConfigResource):
    from calmon_assets.dead_runs import fail_dead_runs, stale_after_seconds

    config = site.load()
    most_stops = max((len(dev.active_ptz_stops) for _, dev in config.fleet.devices()), default=0)
    dead = fail_dead_runs(
        context.instance, [calibration_check_job.name], stale_after_seconds(config.settings, most_stops)
    )
    for item in dead:
        context.log.warning(f"run {item.run.run_id} marked failed: {item.reason}")
    return dg.SkipReason(f"{len(dead)} dead check run(s) marked failed" if dead else "no dead check runs")
