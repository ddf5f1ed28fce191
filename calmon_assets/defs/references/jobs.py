"""The reference scan job: (re)collect one device's reference scan."""

import dagster as dg

from calmon_assets.defs.partitions import device_partitions

reference_scan_job = dg.define_asset_job(
    "reference_scan_job",
    selection=dg.AssetSelection.assets("reference_scan"),
    partitions_def=device_partitions,
    description="(Re)collect a device's reference scan.",
)
