"""calmon monitor: one check cycle now, through the same Dagster job the schedule launches."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from calmon_cli.options import add_config_option, add_workers_option, config_dir

HELP = "run one check cycle now (all enabled devices or --device ...) and print the results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    parser.add_argument("--device", action="append", metavar="ID", help="only this device (repeatable)")
    parser.add_argument("--partition", metavar="TIME_KEY", help="time partition (default: the current one)")
    add_workers_option(parser)
    parser.add_argument("--no-alerts", action="store_true", help="do not send Slack messages")
    parser.add_argument(
        "--no-maintenance",
        action="store_true",
        help="skip the results table upkeep after the cycle (merging finished days, expiring old snapshots)",
    )


def run(args: argparse.Namespace) -> int:
    from calmon_assets.defs.partitions import current_time_key
    from calmon_cli.output import format_results_table, progress_printer
    from calmon_cli.platform import Platform

    platform = Platform(config_dir(args))
    time_key = args.partition or current_time_key(datetime.now(UTC))
    runs = platform.run_check_cycle(
        time_key, args.device, workers=args.workers, progress=progress_printer(f"checks {time_key}")
    )
    table = platform.resources["results_table"].get_client()
    rows = [row for r in runs if (row := table.read(r.device_id, time_key)) is not None]
    print(format_results_table(rows))
    if not args.no_alerts:
        for text in platform.send_alerts():
            print(f"\nslack> {text}")
    if not args.no_maintenance:
        try:
            platform.maintain_results_table()
        except RuntimeError as exc:  # upkeep can wait for the next cycle; the checks are recorded
            print(f"warning: {exc}")
    try:
        platform.refresh_fleet_health()
    except RuntimeError as exc:  # the fleet view catches up after the next cycle; the checks are recorded
        print(f"warning: {exc}")
    missing = [r.device_id for r in runs if table.read(r.device_id, time_key) is None]
    if missing:
        print(f"no result row for: {', '.join(missing)}")
        return 1
    return 0
