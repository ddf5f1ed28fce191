"""calmon validate-config DIR: check calibration_monitoring.ini and devices.yaml, every problem at once."""

from __future__ import annotations

import argparse
import sys

from calmon_core.config import ConfigError, load_config

HELP = "validate calibration_monitoring.ini and devices.yaml in a config folder (exit 2 on problems)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default="configs", help="config folder (default ./configs)")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"{len(exc.problems)} problem(s) in {args.config}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    devices = config.fleet.devices()
    enabled = sum(1 for _, d in devices if d.enabled)
    print(
        f"{args.config}: OK — {len(config.fleet.deployments)} deployment(s), "
        f"{len(devices)} device(s) ({enabled} enabled); results in "
        f"{config.settings.results.catalog} catalog, files in {config.settings.storage.backend} store"
    )
    return 0
