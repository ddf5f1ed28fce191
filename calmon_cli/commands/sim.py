"""calmon sim --fleet FLEET.yaml: run a simulated PTZ fleet until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

HELP = "run a simulated PTZ camera fleet (HTTP cameras + MQTT telemetry) until Ctrl-C"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fleet", required=True, help="fleet file (see configs/fleet.example.yaml)")
    parser.add_argument(
        "--write-devices", metavar="PATH", help="write a devices.yaml pointing calmon at the simulated cameras"
    )
    broker = parser.add_mutually_exclusive_group()
    broker.add_argument(
        "--broker",
        metavar="HOST:PORT",
        default="127.0.0.1:1883",
        help="MQTT broker to publish telemetry to (default 127.0.0.1:1883)",
    )
    broker.add_argument(
        "--embedded-broker", action="store_true", help="start a broker here (mosquitto when installed, else amqtt)"
    )
    parser.add_argument(
        "--broker-port", type=int, default=None, help="port for --embedded-broker (default: a free port)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address the cameras listen on")
    parser.add_argument(
        "--base-port",
        type=int,
        default=None,
        help="first camera port, one per camera in file order (default: free ports)",
    )


def _parse_broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--broker {text!r}: expected HOST:PORT")
    return host, int(port)


def run(args: argparse.Namespace) -> int:
    from calmon_cli.options import print_problems
    from calmon_core.config import ConfigError
    from calmon_sim.broker import EmbeddedBroker
    from calmon_sim.fleet import SimFleet
    from calmon_sim.fleet_spec import load_fleet_spec

    try:
        spec = load_fleet_spec(args.fleet)
    except ConfigError as exc:
        print_problems(exc.problems, "the fleet file")
        return 2
    embedded = None
    if args.embedded_broker:
        embedded = EmbeddedBroker(port=args.broker_port).start()
        broker_host, broker_port = embedded.host, embedded.port
        print(f"MQTT broker: embedded {embedded.kind} on {broker_host}:{broker_port}")
    else:
        try:
            broker_host, broker_port = _parse_broker(args.broker)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        print(f"MQTT broker: {broker_host}:{broker_port}")

    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            fleet = SimFleet(
                spec, broker_host=broker_host, broker_port=broker_port, host=args.host, base_port=args.base_port
            )
        except (ValueError, OSError) as exc:
            print(f"{args.fleet}: cannot start the fleet: {exc}", file=sys.stderr)
            return 2
        with fleet:
            if not fleet.mqtt_connected:
                print(f"warning: broker {broker_host}:{broker_port} not reachable yet; retrying", file=sys.stderr)
            print(f"{len(fleet.cameras)} simulated camera(s):")
            for ep in fleet.endpoints():
                name = f"{ep['deployment']}/{ep['device']}"
                print(f"  {name:<28} {ep['base_url']:<28} telemetry {ep['telemetry_topic']}")
            print(
                f"fleet control: {fleet.control_url}/cameras (faults and lighting of any camera, also while it is offline)"
            )
            if args.write_devices:
                path = fleet.write_devices_yaml(Path(args.write_devices))
                print(f"devices.yaml written to {path}")
            print("running; Ctrl-C to stop", flush=True)
            stop.wait()
            print("stopping...", flush=True)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if embedded is not None:
            embedded.stop()
    print("stopped")
    return 0
