"""Options every command shares, and the errors a command reports as bad input (exit 2)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


class UsageError(Exception):
    """Bad input from the user (an unknown device, a time that does not parse): one line, exit 2."""


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        metavar="DIR",
        help="folder with calibration_monitoring.ini and devices.yaml (default: $CALMON_CONFIG_DIR or ./configs)",
    )


def add_workers_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="runs at once: reference scans (one per device, within [schedule] "
        "max_concurrent_per_deployment per deployment) or check runs (one per deployment, each "
        "checking max_concurrent_per_deployment devices at once); default: from stabilize_time and the CPUs",
    )


def config_dir(args: argparse.Namespace) -> str:
    from calmon_assets.defs.site_config import config_dir_from_env

    return args.config or config_dir_from_env()


def adopt_config_dir(args: argparse.Namespace) -> None:
    """Before a command runs: the code location's partitions are read from $CALMON_CONFIG_DIR when
    first imported, so the site named by --config is theirs too, first day included."""
    from calmon_assets.defs.site_config import CONFIG_DIR_ENV

    if getattr(args, "config", None) and "calmon_assets.defs.partitions" not in sys.modules:
        os.environ[CONFIG_DIR_ENV] = str(Path(args.config).resolve())


def print_problems(problems: list[str], where: str, prefix: str = "") -> None:
    """Every problem found in `where`, one a line, on stderr."""
    print(f"{prefix}{len(problems)} problem(s) in {where}:", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
