"""calmon validate-config [DIR]: check calibration_monitoring.ini and devices.yaml, every problem at once."""

from __future__ import annotations

import argparse
import sys
import warnings

from calmon_cli.options import add_config_option, config_dir, print_problems
from calmon_core.config import ConfigError, load_config

HELP = "validate calibration_monitoring.ini and devices.yaml in a config folder (exit 2 on problems)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", default=None, metavar="DIR", help="config folder (same as --config)")
    add_config_option(parser)


def run(args: argparse.Namespace) -> int:
    directory = args.directory or config_dir(args)
    with warnings.catch_warnings(record=True) as deprecations:
        warnings.simplefilter("always", DeprecationWarning)
        try:
            config = load_config(directory)
        except ConfigError as exc:
            print_problems(exc.problems, directory)
            return 2
    for note in deprecations:
        print(f"note: {note.message}", file=sys.stderr)
    devices = config.fleet.devices()
    enabled = sum(1 for _, d in devices if d.enabled)
    print(
        f"{directory}: OK — {len(config.fleet.deployments)} deployment(s), "
        f"{len(devices)} device(s) ({enabled} enabled); results in "
        f"{config.settings.results.catalog} catalog, files in {config.settings.storage.backend} store"
    )
    return 0
