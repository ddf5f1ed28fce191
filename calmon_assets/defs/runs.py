"""What every run of calmon carries: its tags, and the executor its jobs use."""

import dagster as dg

from calmon_core.config import Settings

DEPLOYMENT_TAG = "calmon/deployment"
DEVICE_TAG = "calmon/device"
REALERT_TAG = "calmon/realert"
REBASE_TAG = "calmon/rebase"  # reference_scan: start a new gauge instead of registering to the stored reference
REGIME_TAG = "calmon/regime"  # reference_scan: store the scan as the bank entry of this lighting regime
BACKFILL_TAG = "dagster/backfill"
# what the check came to (ok, breach, inconclusive, failed), set by calibration_offsets: the run list
# reads Success for every run that wrote its row, this tag says which of them found a breach
CHECK_STATUS_TAG = "calmon/check_status"


def build_executor(settings: Settings) -> dg.ExecutorDefinition:
    """Every job's executor, from [execution] executor; the jobs' run config names none, so each
    job's config is valid under each choice."""
    if settings.execution.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.multiprocess_executor if settings.execution.executor == "multiprocess" else dg.in_process_executor
