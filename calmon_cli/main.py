"""The `calmon` command. Each subcommand is a thin module in calmon_cli.commands exposing HELP,
add_arguments(parser) and run(args) -> exit code; it calls the same code Dagster runs.

Bad input (a broken or missing config, an unknown device, a time that does not parse) is a clear
message on stderr and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from calmon_cli import __version__
from calmon_cli.options import UsageError, adopt_config_dir, print_problems
from calmon_core.config import ConfigError

COMMANDS = [
    "validate-config",
    "sim",
    "extract-features",
    "estimate",
    "collect-references",
    "monitor",
    "results",
    "demo",
    "dev",
]


def _module(name: str):
    return importlib.import_module(f"calmon_cli.commands.{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calmon",
        description="calmon: calibration monitor for fleets of PTZ cameras (on Dagster).",
    )
    parser.add_argument("--version", action="version", version=f"calmon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = _module(name)
        except ModuleNotFoundError as exc:
            if not exc.name or not exc.name.startswith("calmon_cli.commands"):
                raise
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _quiet_expected_noise() -> None:
    # Users read the CLI's own progress lines: Dagster's beta and preview notices about what calmon's
    # definitions use (partitioned asset checks) and pyiceberg's "commit conflict, retrying"
    # (expected with parallel checks; ResultsTable retries) say nothing they can act on.
    warnings.filterwarnings("ignore", message=".*is currently in (beta|preview)")
    logging.getLogger("pyiceberg").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    _quiet_expected_noise()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    adopt_config_dir(args)
    from resources.results_table import ResultsTableError

    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print_problems(exc.problems, "the configuration", prefix=f"calmon {args.command}: ")
        return 2
    except (UsageError, ResultsTableError) as exc:  # a lost or broken catalog: say so, no traceback
        print(f"calmon {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
