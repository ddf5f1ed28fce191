"""The Dagster code location: assets, resources, schedules and sensors of calmon.

Resources are configured from the site's config folder ($CALMON_CONFIG_DIR, default ./configs):
calibration_monitoring.ini for the settings, devices.yaml for the fleet. Secrets are EnvVars, so the
UI shows the variable's name, never its value.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from calmon_assets.assets import ASSETS
from calmon_assets.jobs import (
    calibration_check_job,
    reference_scan_job,
    reprocess_offsets_job,
    results_table_maintenance_job,
)
from calmon_assets.schedules import build_check_schedule, build_maintenance_schedule
from calmon_assets.sensors import (
    fail_dead_check_runs_sensor,
    record_failed_checks_sensor,
    slack_alerts_sensor,
    sync_devices_sensor,
)
from calmon_assets.site import SiteConfigResource, config_dir_from_env
from calmon_core.config import SETTINGS_FILE, ConfigError, Settings, env_reference, load_settings
from resources.camera import CameraResource
from resources.kubectl import KubectlResource
from resources.mqtt import MqttResource
from resources.object_store import ObjectStoreResource
from resources.results_table import ResultsTableResource
from resources.slack import SlackResource

CRON_BY_CADENCE = {"hourly": "5 * * * *", "daily": "5 0 * * *"}


def build_resources(config_dir: str) -> dict[str, object]:
    ini = Path(config_dir) / SETTINGS_FILE
    try:
        settings = load_settings(ini)
    except ConfigError:
        settings = Settings()  # `calmon validate-config` reports the problems
    webhook_env = env_reference(ini, "slack", "webhook_url") or "SLACK_WEBHOOK_URL"
    return {
        "site": SiteConfigResource(config_dir=config_dir),
        "kubectl": KubectlResource(),
        "mqtt": MqttResource(),
        "camera": CameraResource(),
        "object_store": ObjectStoreResource(
            backend=settings.storage.backend,
            bucket=settings.storage.bucket,
            local_root=settings.storage.local_root,
            region=settings.aws.region,
            endpoint_url=settings.aws.endpoint_url,
        ),
        "results_table": ResultsTableResource(
            catalog=settings.results.catalog,
            catalog_name=settings.results.catalog_name,
            database=settings.results.database,
            table=settings.results.table,
            warehouse=settings.results.warehouse,
            sqlite_path=settings.results.sqlite_path,
            rest_uri=settings.results.rest_uri,
            snapshot_retention_hours=settings.results.snapshot_retention_hours,
            region=settings.aws.region,
            endpoint_url=settings.aws.endpoint_url,
        ),
        # The variable's name, read when the client is made (also outside Dagster, by the CLI); an
        # unset variable means "print instead of post" rather than a run Dagster refuses to start.
        "slack": SlackResource(webhook_env_var=webhook_env, channel=settings.slack.channel),
    }


def build_definitions(config_dir: str | None = None) -> dg.Definitions:
    config_dir = config_dir or config_dir_from_env()
    try:
        schedule_settings = load_settings(Path(config_dir) / SETTINGS_FILE).schedule
    except ConfigError:
        schedule_settings = Settings().schedule
    cron = schedule_settings.cron or CRON_BY_CADENCE[schedule_settings.cadence]
    return dg.Definitions(
        assets=ASSETS,
        jobs=[calibration_check_job, reference_scan_job, reprocess_offsets_job, results_table_maintenance_job],
        schedules=[build_check_schedule(cron), build_maintenance_schedule(schedule_settings.maintenance_cron)],
        sensors=[sync_devices_sensor, slack_alerts_sensor, record_failed_checks_sensor, fail_dead_check_runs_sensor],
        resources=build_resources(config_dir),
    )


defs = build_definitions()
