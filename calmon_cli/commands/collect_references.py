"""calmon collect-references: materialise reference_scan for all or some devices."""

from __future__ import annotations

import argparse
import sys

from calmon_cli.options import add_config_option, config_dir

HELP = "materialise the reference_scan asset for every device (or --device ...), with progress"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    parser.add_argument("--device", action="append", metavar="ID", help="only this device (repeatable)")


def run(args: argparse.Namespace) -> int:
    from calmon_cli.output import progress_printer
    from calmon_cli.platform import Platform

    platform = Platform(config_dir(args))
    runs = platform.collect_references(args.device, progress=progress_printer("reference scans"))
    failed = [r for r in runs if not r.succeeded]
    print(f"{len(runs) - len(failed)}/{len(runs)} reference scans stored")
    for r in failed:
        print(f"  {r.device_id}: {r.error}", file=sys.stderr)
    return 1 if failed else 0
