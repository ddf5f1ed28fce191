"""Jobs: the scheduled check (capture + offsets) and the reference scan."""

import dagster as dg

from calmon_assets.partitions import check_partitions, device_partitions

DEPLOYMENT_TAG = "calmon/deployment"
DEVICE_TAG = "calmon/device"
REALERT_TAG = "calmon/realert"

# A launched run (schedule, daemon, UI) executes its steps in its own process by default, not one
# process per step: a check's steps run one after the other anyway, and each step process costs
# about 3.5 CPU seconds of start-up, twice the whole check's work (benchmarks/fleet_cycle.py:
# 8.6 against 1.6 CPU s per check). `execution: config: multiprocess: {}` in a run's config still
# selects one process per step.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}

calibration_check_job = dg.define_asset_job(
    "calibration_check",
    selection=dg.AssetSelection.assets("query_capture", "calibration_offsets"),
    partitions_def=check_partitions,
    description="One calibration check of one device for one time partition.",
    config=IN_PROCESS,
)

reference_scan_job = dg.define_asset_job(
    "reference_scan_job",
    selection=dg.AssetSelection.assets("reference_scan"),
    partitions_def=device_partitions,
    description="(Re)collect a device's reference scan.",
    config=IN_PROCESS,
)

reprocess_offsets_job = dg.define_asset_job(
    "reprocess_offsets",
    selection=dg.AssetSelection.assets("calibration_offsets"),
    partitions_def=check_partitions,
    description="Backfill: re-estimate offsets from stored query captures (no camera needed).",
    config=IN_PROCESS,
)
