"""References: the reference_scan asset (per device), its job, and the local reference cache."""

import dagster as dg

from calmon_assets.defs.references.assets import reference_scan
from calmon_assets.defs.references.jobs import reference_scan_job
from calmon_core.config import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[reference_scan], jobs=[reference_scan_job])
