"""calmon demo: the whole product on one machine in a few minutes.

Starts a simulated fleet with an embedded MQTT broker, collects reference scans, runs a check cycle,
changes some cameras' hidden calibration (drift on one, a repair on another), runs a second cycle,
and prints the results table, the estimation error against the simulator's ground truth, and the
Slack messages (posted to SLACK_WEBHOOK_URL, or to a local receiver when none is set).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from calmon_cli.options import add_workers_option
from calmon_core.check import DEFAULT_THRESHOLD_DEG, is_breach
from calmon_core.config import local_site_settings

HELP = "run the demo: simulated fleet, reference scans, two check cycles with drift, results + Slack"
REPO = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fleet",
        default=str(REPO / "configs" / "fleet.example.yaml"),
        help="simulated fleet file (default configs/fleet.example.yaml)",
    )
    parser.add_argument("--workdir", default=".calmon/demo", help="where the demo keeps its state (wiped first)")
    parser.add_argument("--stabilize-time", type=float, default=3.0, help="seconds of still telemetry (default 3)")
    add_workers_option(parser)


def _print(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)), flush=True)


def _local_slack():
    """A local receiver standing in for Slack when no webhook is set (None when one is)."""
    from calmon_sim.slack_receiver import SlackReceiver

    if os.environ.get("SLACK_WEBHOOK_URL"):
        return None
    receiver = SlackReceiver().start()
    os.environ["SLACK_WEBHOOK_URL"] = receiver.url
    print(f"no SLACK_WEBHOOK_URL set: Slack messages go to a local receiver ({receiver.url.split('/services')[0]})")
    return receiver


def _write_site(fleet, root: Path, stabilize_time: float, start_date: str) -> Path:
    config_dir = root / "configs"
    config_dir.mkdir(parents=True)
    fleet.write_devices_yaml(config_dir / "devices.yaml")
    (config_dir / "calibration_monitoring.ini").write_text(
        local_site_settings(root, stabilize_time=stabilize_time, written_by="`calmon demo`", start_date=start_date)
    )
    for device_id, cam in fleet.cameras.items():
        truth = cam.truth()["true_offset"]
        print(
            f"  {device_id:<10} {cam.base_url}  hidden offset yaw {truth['yaw']:+.2f} "
            f"pitch {truth['pitch']:+.2f} roll {truth['roll']:+.2f}"
        )
    return config_dir


def _check_cycles(platform, fleet, cycles: list[str], workers: int | None) -> dict[str, dict]:
    """Two check cycles, the hidden calibration changed between them; the truth of the last one."""
    from calmon_cli.output import progress_printer

    truths: dict[str, dict] = {}
    for number, time_key in enumerate(cycles, 1):
        if number == 2:
            _print("changing hidden calibration between cycles")
            for device_id, change in _drift_plan(fleet).items():
                fleet.cameras[device_id].set_true_offset(*change)
                print(
                    f"  {device_id}: hidden offset now yaw {change[0]:+.2f} pitch {change[1]:+.2f} roll {change[2]:+.2f}"
                )
        _print(f"{number + 1}. check cycle for partition {time_key}")
        truths = {device_id: cam.truth()["true_offset"] for device_id, cam in fleet.cameras.items()}
        platform.run_check_cycle(time_key, workers=workers, progress=progress_printer(f"cycle {number}"))
        sent = platform.send_alerts()
        print(f"{len(sent)} Slack message(s):")
        alerts = platform.config.settings.alerts
        if not sent and alerts.policy == "state_change":
            print(
                "  (none: the state_change alert policy posts changes of state; a breach is declared "
                f"after {alerts.breach_checks} agreeing checks beyond the threshold)"
            )
        for text in sent:
            print("  " + text.replace("\n", "\n  "))
    return truths


def _print_results(platform, time_key: str, truths: dict[str, dict]) -> None:
    from calmon_cli.output import format_results_table

    _print("results (latest row per device, as Athena would show it)")
    table = platform.resources["results_table"].get_client()
    print(format_results_table(table.latest_per_device()))
    _print("estimate vs the simulator's hidden truth (cycle 2)")
    for device_id in sorted(truths):
        row, truth = table.read(device_id, time_key), truths[device_id]
        if row is None or not row.success:
            print(f"  {device_id:<10} no estimate ({row.status.value if row else 'no row'})")
            continue
        errors = [abs(getattr(row, f"{a}_offset") - truth[a]) for a in ("yaw", "pitch", "roll")]
        print(
            f"  {device_id:<10} truth {truth['yaw']:+.3f}/{truth['pitch']:+.3f}/{truth['roll']:+.3f}"
            f"  estimate {row.yaw_offset:+.3f}/{row.pitch_offset:+.3f}/{row.roll_offset:+.3f}"
            f"  max error {max(errors):.4f}°"
        )


def run(args: argparse.Namespace) -> int:
    from calmon_sim.broker import EmbeddedBroker
    from calmon_sim.fleet import SimFleet

    started = time.monotonic()
    root = Path(args.workdir).resolve()
    if root.exists():
        shutil.rmtree(root)
    receiver = _local_slack()
    with EmbeddedBroker() as broker:
        print(f"MQTT broker: {broker.kind} on {broker.host}:{broker.port}")
        fleet = SimFleet.from_file(args.fleet, broker_host=broker.host, broker_port=broker.port)
        with fleet:
            # the demo's partitions begin yesterday: from an older start date the UI would greet the
            # user with thousands of "missing" checks. The code location reads them from
            # $CALMON_CONFIG_DIR when it is first imported, which is below.
            start_date = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
            config_dir = _write_site(fleet, root, args.stabilize_time, start_date)
            os.environ["CALMON_CONFIG_DIR"] = str(config_dir)
            from calmon_assets.defs.partitions import current_time_key
            from calmon_cli.output import progress_printer
            from calmon_cli.platform import Platform

            platform = Platform(str(config_dir), home=str(root / "dagster_home"))
            _print("1. reference scans")
            print("(taken on freshly calibrated cameras; the hidden offsets above appear afterwards)")
            with fleet.calibrated():
                refs = platform.collect_references(progress=progress_printer("reference scans"))
            if not all(r.succeeded for r in refs):
                print("some reference scans failed; their checks will say so")
            now = datetime.now(UTC)
            cycles = [current_time_key(now - timedelta(hours=1)), current_time_key(now)]
            truths = _check_cycles(platform, fleet, cycles, args.workers)
            _print_results(platform, cycles[-1], truths)
            _print_fleet_view(platform, root, config_dir)
    if receiver:
        print(f"\nlocal Slack receiver got {len(receiver.messages)} message(s)")
        receiver.stop()
    print(
        f"\ndemo finished in {time.monotonic() - started:.0f}s; state in {root}. "
        f"Browse it: DAGSTER_HOME={root / 'dagster_home'} calmon dev --config {config_dir}"
    )
    return 0


def _print_fleet_view(platform, root: Path, config_dir: Path) -> None:
    """The fleet_health asset refreshed (what the daemon does after a cycle), where to open it, and
    the daily digest as the slack_digest sensor would post it."""
    from calmon_assets.defs.fleet.assets import COUNT_KEYS  # the platform has loaded the code location

    _print("fleet view (the fleet_health asset in the Dagster UI)")
    try:
        metadata = platform.refresh_fleet_health()
    except RuntimeError as exc:
        print(f"  {exc}")
        return
    counts = ", ".join(
        f"{metadata[key].value} {key.removeprefix('devices_').replace('_', ' ')}" for key in COUNT_KEYS.values()
    )
    print(f"  {metadata['devices'].value} devices: {counts}")
    print(f"  open it: DAGSTER_HOME={root / 'dagster_home'} calmon dev --config {config_dir}")
    print("  then http://127.0.0.1:3000/assets/fleet_health (table, heat map, worst devices' trends)")
    print(
        "  and http://127.0.0.1:3000/assets/calibration_offsets?view=partitions (every check, per deployment and hour: each device in its table)"
    )
    _print("daily digest (what the slack_digest sensor posts at [alerts] digest_hour)")
    print("  " + str(metadata["digest"].value).replace("\n", "\n  "))


def _drift_plan(fleet) -> dict[str, tuple[float, float, float]]:
    """Break the first healthy camera, repair the first breached one (to show a recovery)."""
    plan: dict[str, tuple[float, float, float]] = {}
    for device_id, cam in sorted(fleet.cameras.items()):
        off = cam.truth()["true_offset"]
        breached = is_breach(off, DEFAULT_THRESHOLD_DEG)
        if breached and not any(v == (0.0, 0.0, 0.0) for v in plan.values()):
            plan[device_id] = (0.0, 0.0, 0.0)
        elif not breached and not any(v != (0.0, 0.0, 0.0) for v in plan.values()):
            plan[device_id] = (0.9, -0.3, 0.15)
    return plan
