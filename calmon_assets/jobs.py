"""Jobs: the scheduled check (capture + offsets), the reference scan, and the results table's upkeep."""

import dagster as dg

from calmon_assets.partitions import check_partitions, device_partitions
from resources.results_table import ResultsTableResource

DEPLOYMENT_TAG = "calmon/deployment"
DEVICE_TAG = "calmon/device"
REALERT_TAG = "calmon/realert"


calibration_check_job = dg.define_asset_job(
    "calibration_check",
    selection=dg.AssetSelection.assets("query_capture", "calibration_offsets"),
    partitions_def=check_partitions,
    description="One calibration check of one device for one time partition.",
)

reference_scan_job = dg.define_asset_job(
    "reference_scan_job",
    selection=dg.AssetSelection.assets("reference_scan"),
    partitions_def=device_partitions,
    description="(Re)collect a device's reference scan.",
)

reprocess_offsets_job = dg.define_asset_job(
    "reprocess_offsets",
    selection=dg.AssetSelection.assets("calibration_offsets"),
    partitions_def=check_partitions,
    description="Backfill: re-estimate offsets from stored query captures (no camera needed).",
)


@dg.op(
    description="Merge the one-file-per-check data files and expire snapshots older "
    "than [results] snapshot_retention_hours, so reading and writing the table stays fast.",
)
def maintain_results_table(context: dg.OpExecutionContext, results_table: ResultsTableResource) -> dg.Output[dict]:
    report = results_table.get_client().maintain()
    context.log.info(f"results table upkeep: {report}")
    return dg.Output(report, metadata=report)


@dg.job(
    name="results_table_maintenance",
    description="Upkeep of the Iceberg results table (scheduled; safe beside running checks).",
)
def results_table_maintenance_job():
    maintain_results_table()
