"""fleet_health: every device's latest state, worst offset, trend, days to the threshold and last good
check as a short table (every number in fleet_details), with the fleet heat map and the worst
devices' trend plots. Thin: the numbers
come from calmon_core.fleet_view, the pictures from calmon_core.plots."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import dagster as dg

from calmon_assets.defs.metadata import image_md
from calmon_assets.defs.site_config import SiteConfigResource
from calmon_core.alert_policy import FLEET_STATUSES, DeviceSummary, format_digest
from calmon_core.fleet_view import (
    OVERVIEW_COLUMNS,
    daily_max_offsets,
    fleet_summaries,
    markdown_table,
    overview_rows,
)
from calmon_core.models import CalibrationResult, CheckStatus, utc_now
from calmon_core.plots import fleet_heat_map_png, offset_trend_png
from resources.results_table import ResultsTableResource

# the metadata key counting each state's devices, in FLEET_STATUSES' order (the demo prints them)
COUNT_KEYS = {status: "devices_in_breach" if status == "breach" else f"devices_{status}" for status in FLEET_STATUSES}
FLEET_DAYS = 14  # the heat map's columns, and the history the table's states are folded from
WORST_PLOTS = 4


def fleet_histories(rows: list[CalibrationResult], device_ids: list[str]) -> dict[str, list[CalibrationResult]]:
    """Rows by device (time order kept); devices of devices.yaml without rows appear empty."""
    histories: dict[str, list[CalibrationResult]] = defaultdict(list)
    for device_id in device_ids:
        histories[device_id]
    for row in rows:
        histories[row.device_id].append(row)
    return dict(histories)


def _trend_png(summary: DeviceSummary, rows: list[CalibrationResult], threshold_deg: float) -> bytes:
    measured = [r for r in rows if CheckStatus(r.status) in (CheckStatus.ok, CheckStatus.breach)]
    forecast = None
    if summary.trend_axis and summary.trend_deg_per_day is not None and summary.status != "breach":
        level = summary.offsets.get(summary.trend_axis) or 0.0
        forecast = (summary.trend_axis, level, summary.trend_deg_per_day, summary.days_to_threshold)
    return offset_trend_png(
        [r.check_time() for r in measured],
        {a: [r.offsets()[a] for r in measured] for a in ("yaw", "pitch", "roll")},
        threshold_deg,
        f"{summary.deployment_name} / {summary.device_id}: {summary.status}",
        uncertainties={a: [r.uncertainties()[a] for r in measured] for a in ("yaw", "pitch", "roll")},
        forecast=forecast,
    )


def overview_table(summaries: list[DeviceSummary], now: datetime) -> dg.MetadataValue:
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, "string", description=about) for name, about in OVERVIEW_COLUMNS]
    )
    return dg.MetadataValue.table([dg.TableRecord(row) for row in overview_rows(summaries, now)], schema=schema)


@dg.asset(
    name="fleet_health",
    group_name="fleet",
    kinds={"python", "iceberg"},
    description="The fleet at a glance, refreshed after each check cycle: every device's state by the "
    "alert policy (breach, unconfirmed, failing, inconclusive, ok), latest offsets ± σ, drift trend and days to the "
    "threshold, last good check; a heat map of the fleet over the last two weeks and the worst "
    "devices' trend plots; the daily digest as it would be posted.",
)
def fleet_health(site: SiteConfigResource, results_table: ResultsTableResource) -> dg.MaterializeResult:
    config = site.load()
    settings = config.settings
    now = utc_now()
    rows = results_table.get_client().rows_since(now - timedelta(days=FLEET_DAYS))
    histories = fleet_histories(rows, [device.id for _, device in config.fleet.devices(enabled_only=False)])
    summaries = fleet_summaries({d: r for d, r in histories.items() if r}, settings.alerts)
    threshold = settings.check.threshold_deg
    devices, days, values, failed = daily_max_offsets(histories, now, FLEET_DAYS)
    heat = fleet_heat_map_png(devices, days, values, threshold, failed)
    worst = [s for s in summaries if s.worst_offset_deg is not None][:WORST_PLOTS]
    plots = "\n\n".join(
        image_md(_trend_png(s, histories[s.device_id], threshold), s.device_id, "image/png").value  # type: ignore[union-attr]
        for s in worst
    )
    return dg.MaterializeResult(
        metadata={
            # a table entry, unlike markdown of 1,000 characters or more, is shown in place
            "fleet": overview_table(summaries, now),
            "heat_map": image_md(heat, "fleet heat map", "image/png"),
            "worst_devices": dg.MetadataValue.md(plots or "no measurements in the last two weeks"),
            "fleet_details": dg.MetadataValue.md(markdown_table(summaries)),
            "digest": dg.MetadataValue.md(format_digest("fleet", summaries, now)),
            "devices": dg.MetadataValue.int(len(histories)),
            **{
                key: dg.MetadataValue.int(sum(1 for s in summaries if s.status == status))
                for status, key in COUNT_KEYS.items()
            },
        }
    )


fleet_health_job = dg.define_asset_job(
    "fleet_health_refresh",
    selection=dg.AssetSelection.assets("fleet_health"),
    description="Refresh the fleet view (after each check cycle).",
)
