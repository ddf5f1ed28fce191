"""The results table's upkeep job: merge small files, expire old snapshots."""

import dagster as dg

from resources.results_table import ResultsTableResource


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
