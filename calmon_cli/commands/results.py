"""calmon results: read the results table (the local stand-in for an Athena query)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from calmon_cli.options import add_config_option, config_dir

HELP = "show results: latest row per device (default), or --device ID history; --json for machines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    parser.add_argument("--device", metavar="ID", help="history of one device")
    parser.add_argument("--since", metavar="T", help="ISO time (e.g. 2026-11-24 or 2026-11-24T13:00Z)")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _since(text: str | None) -> datetime | None:
    from calmon_cli.options import UsageError

    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r}: expected an ISO time, e.g. 2026-11-24 or 2026-11-24T13:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    from calmon_cli.output import format_results_table
    from calmon_core.config import load_config
    from resources.results_table import ResultsTable

    since = _since(args.since)
    config = load_config(config_dir(args))
    table = ResultsTable(config.settings.results, config.settings.aws)
    if args.device:
        rows = table.history(args.device, since=since, limit=args.limit)
    else:
        rows = [r for r in table.latest_per_device() if since is None or r.timestamp >= since]
    rows.sort(key=lambda r: (r.deployment_name, r.device_id, r.timestamp))
    if args.json:
        for row in rows:
            print(json.dumps(row.model_dump(mode="json")))
    else:
        print(format_results_table(rows))
    return 0
