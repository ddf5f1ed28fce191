"""The Dagster code location: assets, resources, schedules and sensors of calmon."""

import dagster as dg

defs = dg.Definitions(assets=[])
