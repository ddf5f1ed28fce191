"""Alerts: the slack_alerts sensor posting each new check result to Slack."""

import dagster as dg

from calmon_assets.defs.alerts.sensors import slack_alerts_sensor
from calmon_core.config import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(sensors=[slack_alerts_sensor])
