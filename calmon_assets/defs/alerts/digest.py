"""The daily digest: one Slack message per fleet at [alerts] digest_hour (UTC)."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

from calmon_assets.defs.fleet.assets import FLEET_DAYS, fleet_histories
from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.alert_policy import digest_due, format_digest
from calmon_core.fleet_view import fleet_summaries
from calmon_core.models import utc_now
from resources.results_table import ResultsTableResource
from resources.slack import SlackResource

# When the last digest went out, in the instance's key-value store (the sensor and the CLI share it).
DIGEST_CURSOR_KEY = "calmon/slack_digest_sent_at"


def fleet_digest(config, results_table, now: datetime) -> str:
    rows = results_table.rows_since(now - timedelta(days=FLEET_DAYS))
    histories = fleet_histories(rows, [device.id for _, device in config.fleet.devices(enabled_only=False)])
    summaries = fleet_summaries({d: r for d, r in histories.items() if r}, config.settings.alerts)
    return format_digest("fleet", summaries, now)


def send_digest_if_due(instance: dg.DagsterInstance, config, results_table, slack, now: datetime | None = None):
    """Post the digest when it is due (once a day, from the digest hour); its text, or None."""
    now = now or utc_now()
    storage = instance.run_storage
    last = storage.get_cursor_values({DIGEST_CURSOR_KEY}).get(DIGEST_CURSOR_KEY)
    last_sent = datetime.fromisoformat(last) if last else None
    if config.settings.alerts.policy == "every_check" or not digest_due(now, last_sent, config.settings.alerts):
        return None
    text = fleet_digest(config, results_table, now)
    outcome = slack.send(text)
    if outcome.worth_retrying_later:
        return None  # the next tick tries again
    storage.set_cursor_values({DIGEST_CURSOR_KEY: now.isoformat()})
    return text


@dg.sensor(
    name="slack_digest",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts the daily digest at [alerts] digest_hour (UTC): devices in breach (since when, how "
    "far), failing devices, the five fastest-drifting devices with their forecast, counts.",
)
def slack_digest_sensor(
    context: dg.SensorEvaluationContext,
    site: SiteConfigResource,
    results_table: ResultsTableResource,
    slack: SlackResource,
):
    text = send_digest_if_due(context.instance, site.load(), results_table.get_client(), slack.get_client())
    return dg.SkipReason("digest posted" if text else "no digest due")
