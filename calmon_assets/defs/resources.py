"""Every resource of the code location, built once from the site's loaded settings.

Secrets are EnvVars or variable names, so the UI shows the variable's name, never its value.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.config import SETTINGS_FILE, Settings, env_reference
from resources.camera import CameraResource
from resources.kubectl import KubectlResource
from resources.mqtt import MqttResource
from resources.object_store import ObjectStoreResource
from resources.results_table import ResultsTableResource
from resources.slack import SlackResource


def _local_values(context: dg.InputContext | dg.OutputContext):
    # the private module holds the plain (non-configurable) manager FilesystemIOManager builds
    from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager

    instance = None
    if isinstance(context, dg.InputContext):
        try:  # a value read outside its step (a partition's stored captures) has an instance, no step
            instance = context.instance
        except dg.DagsterInvariantViolationError:
            instance = None
    instance = instance or context.step_context.instance
    return PickledObjectFilesystemIOManager(base_dir=instance.storage_directory())


def _s3_io_manager_with_local_fallback():
    from dagster_aws.s3 import S3PickleIOManager

    class S3ValuesWithLocalFallback(S3PickleIOManager):
        """Asset values in the bucket; while the bucket is down, on the run's own disk, so a check
        whose files could not be stored still ends with its estimate (a later pod then re-reads the
        capture from query_scan/ instead)."""

        def handle_output(self, context: dg.OutputContext, obj: object) -> None:
            try:
                super().handle_output(context, obj)
            except Exception as exc:  # noqa: BLE001 - any S3 failure: keep the value locally
                context.log.warning(f"asset value kept on local disk, the bucket failed: {type(exc).__name__}")
                _local_values(context).handle_output(context, obj)

        def load_input(self, context: dg.InputContext) -> object:
            try:
                return super().load_input(context)
            except Exception:  # noqa: BLE001 - not in the bucket (or the bucket down): a local copy
                return _local_values(context).load_input(context)

    return S3ValuesWithLocalFallback


def build_io_manager(settings: Settings) -> dg.ConfigurableIOManager:
    """Where asset values that cross runs live (query_capture's outcome, read by a reprocess
    backfill): the bucket when the object store is S3, so a run in a fresh pod finds what a run in
    another pod stored; else the instance's local storage folder."""
    if settings.storage.backend == "s3":
        from dagster_aws.s3 import S3Resource

        s3 = S3Resource(region_name=settings.aws.region, endpoint_url=settings.aws.endpoint_url or None)
        manager = _s3_io_manager_with_local_fallback()
        return manager(s3_resource=s3, s3_bucket=settings.storage.bucket, s3_prefix="dagster/io")
    return dg.FilesystemIOManager()


def object_store_resource(settings: Settings) -> ObjectStoreResource:
    return ObjectStoreResource(
        backend=settings.storage.backend,
        bucket=settings.storage.bucket,
        local_root=settings.storage.local_root,
        region=settings.aws.region,
        endpoint_url=settings.aws.endpoint_url,
    )


def build_resources(config_dir: str, settings: Settings) -> dict[str, object]:
    webhook_env = env_reference(Path(config_dir) / SETTINGS_FILE, "slack", "webhook_url") or "SLACK_WEBHOOK_URL"
    aws = {"region": settings.aws.region, "endpoint_url": settings.aws.endpoint_url}
    return {
        "io_manager": build_io_manager(settings),
        "site": SiteConfigResource(config_dir=config_dir),
        "kubectl": KubectlResource(),
        "mqtt": MqttResource(),
        "camera": CameraResource(),
        "object_store": object_store_resource(settings),
        "results_table": ResultsTableResource(
            catalog=settings.results.catalog,
            catalog_name=settings.results.catalog_name,
            database=settings.results.database,
            table=settings.results.table,
            warehouse=settings.results.warehouse,
            sqlite_path=settings.results.sqlite_path,
            rest_uri=settings.results.rest_uri,
            snapshot_retention_hours=settings.results.snapshot_retention_hours,
            **aws,
        ),
        # The variable's name, read when the client is made (also outside Dagster, by the CLI); an
        # unset variable means "print instead of post" rather than a run Dagster refuses to start.
        "slack": SlackResource(webhook_env_var=webhook_env, channel=settings.slack.channel),
    }
