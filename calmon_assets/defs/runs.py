"""What every run of calmon carries: its tags, and the executor its jobs use."""

DEPLOYMENT_TAG = "calmon/deployment"
DEVICE_TAG = "calmon/device"
REALERT_TAG = "calmon/realert"
REBASE_TAG = "calmon/rebase"  # reference_scan: start a new gauge instead of registering to the stored reference
REGIME_TAG = "calmon/regime"  # reference_scan: store the scan as the bank entry of this lighting regime
BACKFILL_TAG = "dagster/backfill"

# A launched run (schedule, daemon, UI) executes its steps in its own process by default, not one
# process per step: a check's steps run one after the other anyway, and each step process costs
# about 3.5 CPU seconds of start-up, twice the whole check's work (benchmarks/fleet_cycle.py:
# 8.6 against 1.6 CPU s per check). `execution: config: multiprocess: {}` in a run's config still
# selects one process per step.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
