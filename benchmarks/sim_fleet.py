"""Benchmark of the simulated fleet: render and JPEG time per frame, HTTP snapshot latency, and the
CPU a 200-camera fleet uses publishing 10 Hz telemetry to an embedded broker.

    .venv/bin/python benchmarks/sim_fleet.py [--cameras 200] [--rate 10] [--seconds 20]

The subscriber counting messages runs in a separate process, so the CPU figure is the fleet's own
(process CPU seconds / wall seconds, all threads; 100% = one core).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calmon_sim.broker import EmbeddedBroker  # noqa: E402
from calmon_sim.fleet import SimFleet  # noqa: E402
from calmon_sim.fleet_spec import FleetSpec  # noqa: E402
from calmon_sim.scene import load_scene  # noqa: E402

SUBSCRIBER = r"""
import sys, threading, time
import paho.mqtt.client as mqtt
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
count = 0
started = threading.Event()
def on_message(c, u, m):
    global count
    count += 1
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
c.on_message = on_message
c.on_subscribe = lambda *a: started.set()
c.connect(host, port)
c.subscribe("calmon/+/+/telemetry")
c.loop_start()
started.wait(10)
print("ready", flush=True)
sys.stdin.readline()  # the benchmark says when its measuring window starts
t0, n0 = time.monotonic(), count
time.sleep(seconds)
print(f"{count - n0} {time.monotonic() - t0}", flush=True)
c.loop_stop()
"""


def stats_ms(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000.0
    return float(ms.mean()), float(np.percentile(ms, 95))


def bench_render(repeats: int) -> list[tuple[str, float, float]]:
    scene = load_scene("synthetic:0")
    rng = np.random.default_rng(1)
    rows = []
    for width, height in ((1280, 720), (640, 360)):
        renders, encodes = [], []
        for _ in range(repeats):
            yaw, pitch, roll = rng.uniform(-180, 180), rng.uniform(-20, 20), rng.uniform(-3, 3)
            hfov = rng.choice([60.0, 30.0, 15.0])
            t = time.perf_counter()
            image = scene.render(yaw, pitch, roll, hfov, width, height)
            renders.append(time.perf_counter() - t)
            t = time.perf_counter()
            ok, _ = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            encodes.append(time.perf_counter() - t)
        rows.append((f"render {width}x{height}", *stats_ms(renders)))
        rows.append((f"JPEG encode {width}x{height} q90", *stats_ms(encodes)))
    return rows


def bench_snapshot(repeats: int) -> tuple[str, float, float]:
    spec = FleetSpec.model_validate(
        {"deployments": [{"name": "bench", "devices": [{"id": "snap", "slew_speed_deg_s": 1e6}]}]}
    )
    fleet = SimFleet(spec, broker_port=1)  # HTTP only: no broker needed
    cam = fleet.cameras["snap"]
    cam.start()
    try:
        times = []
        for i in range(repeats):
            cam.move_to(i * 7.0 % 360 - 180, 0.0)  # a new pose every time: no cached render
            time.sleep(0.01)  # the head arrives (1e6 deg/s)
            t = time.perf_counter()
            with urllib.request.urlopen(cam.base_url + "/snapshot.jpg", timeout=10) as response:
                response.read()
            times.append(time.perf_counter() - t)
        return ("GET /snapshot.jpg 1280x720 (new pose)", *stats_ms(times))
    finally:
        fleet.stop()


def bench_fleet(cameras: int, rate: float, seconds: float) -> dict:
    devices = [{"id": f"cam-{i:03d}", "telemetry_rate_hz": rate} for i in range(cameras)]
    half = cameras // 2
    spec = FleetSpec.model_validate(
        {
            "deployments": [
                {"name": "bench-a", "devices": devices[:half]},
                {"name": "bench-b", "devices": devices[half:]},
            ]
        }
    )
    with EmbeddedBroker() as broker:
        sub = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, broker.host, str(broker.port), str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert sub.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        fleet = SimFleet(spec, broker_host=broker.host, broker_port=broker.port)
        startup_s = time.monotonic() - t0
        with fleet:
            time.sleep(2.0)  # warm up: connected, cadence established
            usage0 = resource.getrusage(resource.RUSAGE_SELF)
            wall0 = time.monotonic()
            published0 = fleet.published
            sub.stdin.write("go\n")
            sub.stdin.flush()
            received, sub_seconds = sub.stdout.readline().split()
            usage1 = resource.getrusage(resource.RUSAGE_SELF)
            wall = time.monotonic() - wall0
            published = fleet.published - published0
        sub.wait(10)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {
        "cameras": cameras,
        "rate_hz": rate,
        "wall_s": wall,
        "startup_s": startup_s,
        "cpu_percent": 100.0 * cpu / wall,
        "user_percent": 100.0 * (usage1.ru_utime - usage0.ru_utime) / wall,
        "published_per_s": published / wall,
        "received_per_s": int(received) / float(sub_seconds),
        "expected_per_s": cameras * rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()

    rows = bench_render(args.repeats)
    rows.append(bench_snapshot(args.repeats // 2))
    print(f"{'frames (synthetic:0, random poses)':<40} {'mean ms':>9} {'p95 ms':>9}")
    for name, mean, p95 in rows:
        print(f"{name:<40} {mean:>9.1f} {p95:>9.1f}")

    result = bench_fleet(args.cameras, args.rate, args.seconds)
    print()
    print(f"{'fleet telemetry':<40} {'value':>9}")
    lines = [
        ("cameras x rate (Hz)", f"{result['cameras']} x {result['rate_hz']:g}"),
        ("fleet start-up, scene cached (s)", f"{result['startup_s']:.1f}"),
        ("measured wall time (s)", f"{result['wall_s']:.1f}"),
        ("fleet process CPU (% of one core)", f"{result['cpu_percent']:.1f}"),
        ("  of which user (%)", f"{result['user_percent']:.1f}"),
        ("messages/s expected", f"{result['expected_per_s']:.0f}"),
        ("messages/s published", f"{result['published_per_s']:.0f}"),
        ("messages/s received by subscriber", f"{result['received_per_s']:.0f}"),
    ]
    for name, value in lines:
        print(f"{name:<40} {value:>9}")
    print("\n" + json.dumps({"fleet": result, "frames_ms": {n: {"mean": m, "p95": p} for n, m, p in rows}}))


if __name__ == "__main__":
    main()
