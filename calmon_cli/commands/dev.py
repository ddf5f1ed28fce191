"""calmon dev: the Dagster UI and daemon on this workspace (dagster dev)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from calmon_cli.options import add_config_option, config_dir

HELP = "start the Dagster UI and daemon (dagster dev) on this workspace"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="127.0.0.1")


def run(args: argparse.Namespace) -> int:
    from calmon_cli.instance import prepare_dagster_home
    from calmon_core.config import load_config

    directory = config_dir(args)
    home = prepare_dagster_home(load_config(directory).settings)
    env = {**os.environ, "CALMON_CONFIG_DIR": str(Path(directory).resolve()), "DAGSTER_HOME": str(home)}
    workspace = Path(__file__).resolve().parents[2] / "workspace.yaml"
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
    print(f"DAGSTER_HOME={home}  CALMON_CONFIG_DIR={env['CALMON_CONFIG_DIR']}")
    return subprocess.call(cmd, env=env)
