"""Alerts: the slack_alerts sensor posting new check results to Slack (per the [alerts] policy), and the
daily digest sensor."""

import dagster as dg

from calmon_assets.defs.alerts.digest import slack_digest_sensor
from calmon_assets.defs.alerts.sensors import slack_alerts_sensor
from calmon_core.config import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(sensors=[slack_alerts_sensor, slack_digest_sensor])
