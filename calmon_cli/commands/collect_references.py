"""calmon collect-references: materialise reference_scan for all or some devices."""

from __future__ import annotations

import argparse
import sys

from calmon_cli.options import add_config_option, config_dir
from calmon_core.reference_bank import REGIMES

HELP = "materialise the reference_scan asset for every device (or --device ...), with progress"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    parser.add_argument("--device", action="append", metavar="ID", help="only this device (repeatable)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--rebase",
        action="store_true",
        help="start a new gauge (default: register the new scan to the stored reference, keeping its gauge)",
    )
    how.add_argument(
        "--regime",
        choices=REGIMES,
        help="store the scan as this lighting regime's bank entry of the stored reference",
    )


def run(args: argparse.Namespace) -> int:
    from calmon_cli.output import progress_printer
    from calmon_cli.platform import Platform

    platform = Platform(config_dir(args))
    runs = platform.collect_references(
        args.device,
        progress=progress_printer("reference scans"),
        rebase=args.rebase,
        regime=args.regime,
    )
    failed = [r for r in runs if not r.succeeded]
    print(f"{len(runs) - len(failed)}/{len(runs)} reference scans stored")
    for r in failed:
        print(f"  {r.device_id}: {r.error}", file=sys.stderr)
    return 1 if failed else 0
