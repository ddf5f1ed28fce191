"""The check's jobs: the scheduled check (capture + offsets), and the backfill that re-estimates."""

import dagster as dg

from calmon_assets.defs.partitions import check_partitions

calibration_check_job = dg.define_asset_job(
    "calibration_check",
    selection=dg.AssetSelection.assets("query_capture", "calibration_offsets"),
    partitions_def=check_partitions,
    description="One calibration check of one deployment's devices for one time partition.",
)

reprocess_offsets_job = dg.define_asset_job(
    "reprocess_offsets",
    selection=dg.AssetSelection.assets("calibration_offsets"),
    partitions_def=check_partitions,
    description="Backfill: re-estimate offsets from stored query captures (no camera needed).",
)
