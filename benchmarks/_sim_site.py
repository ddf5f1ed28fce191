"""The simulated site shared by benchmarks/fleet_cycle.py and benchmarks/chaos_soak.py.

Loopback only: an embedded MQTT broker, a SimFleet, a local object store and a SQLite Iceberg
catalog in a temp folder, and a local Slack receiver.

The fleet runs in a child process (FleetProcess): in production the cameras are other machines, so
their rendering and 10 Hz telemetry must not count as calmon's CPU, share calmon's GIL or raise its
peak memory (each synthetic panorama is 100 MB). The benchmark process then holds calmon only, plus
the Slack receiver (a few HTTP posts).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import resource
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from calmon_core.config import local_site_settings
from calmon_sim.broker import EmbeddedBroker
from calmon_sim.fleet_spec import small_camera
from calmon_sim.slack_receiver import SlackReceiver

# Panoramas already generated on this machine (~/.cache/calmon/synthetic); a new seed costs
# several seconds to generate and 100 MB in the fleet process, so devices share these five scenes,
# each device looking at its own part of it (start_pose yaw).
SCENE_SEEDS = (0, 1, 11, 12, 13)
RESOLUTION = (640, 360)  # default; real PTZ cameras deliver 1920x1080 (--resolution)
THRESHOLD_DEG = 0.5
WEBHOOK_ENV = "CALMON_BENCH_WEBHOOK"


def random_offset(rng: random.Random, breach: bool) -> tuple[float, float, float]:
    """A hidden offset clearly above (one axis 0.7-1.2°) or clearly below (all within 0.3°) the
    threshold: a check near 0.5° would make the expected alert depend on estimation noise."""
    small = [round(rng.uniform(-0.3, 0.3), 3) for _ in range(3)]
    if breach:
        axis = rng.randrange(2)  # yaw or pitch: roll is the least observable angle at wide zoom
        small[axis] = round(rng.choice((-1, 1)) * rng.uniform(0.7, 1.2), 3)
    return small[0], small[1], small[2]


def fleet_spec(
    devices: int,
    deployments: int,
    seed: int,
    breach_share: float = 0.3,
    resolution: tuple[int, int] = RESOLUTION,
) -> dict:
    """`devices` cameras over `deployments` sites at `resolution`, synthetic scenes, passive mode,
    a share of them with a hidden offset above the threshold."""
    rng = random.Random(seed)
    sites: list[dict] = [{"name": f"site-{i:02d}", "devices": []} for i in range(deployments)]
    for i in range(devices):
        offset = random_offset(rng, rng.random() < breach_share)
        # inside the reference grid's coverage, each device of a scene at its own heading
        yaw = float((i // len(SCENE_SEEDS)) * 13 % 70 - 30)
        sites[i % deployments]["devices"].append(
            small_camera(f"cam-{i:03d}", SCENE_SEEDS[i % len(SCENE_SEEDS)], yaw, offset, resolution=resolution)
        )
    return {"deployments": [s for s in sites if s["devices"]]}


def _fleet_main(spec: dict, broker_host: str, broker_port: int, conn, parent_pid: int) -> None:
    """The child process: serve the fleet and answer the parent's commands until told to stop."""
    from calmon_sim.fleet import SimFleet
    from calmon_sim.fleet_spec import FleetSpec

    def orphan_watch() -> None:  # a killed benchmark must not leave 200 cameras running
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=orphan_watch, daemon=True).start()
    fleet = SimFleet(FleetSpec.model_validate(spec), broker_host=broker_host, broker_port=broker_port).start()
    conn.send(("ok", fleet.devices_config()))
    calibrated = None
    try:
        while True:
            command, args = conn.recv()
            try:
                if command == "stop":
                    conn.send(("ok", None))
                    break
                if command == "calibrate":
                    calibrated = fleet.calibrated()
                    calibrated.__enter__()
                    result = None
                elif command == "uncalibrate":
                    calibrated.__exit__(None, None, None)
                    calibrated = None
                    result = None
                elif command == "camera":
                    device_id, method, kwargs = args
                    result = getattr(fleet.cameras[device_id], method)(**kwargs)
                elif command == "truths":
                    result = {d: cam.truth() for d, cam in fleet.cameras.items()}
                elif command == "cpu":
                    usage = resource.getrusage(resource.RUSAGE_SELF)
                    result = usage.ru_utime + usage.ru_stime
                else:
                    raise ValueError(f"unknown command {command!r}")
                conn.send(("ok", result))
            except Exception as exc:  # the parent decides; the fleet keeps serving
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        fleet.stop()


class FleetProcess:
    """A SimFleet in a child process, driven through a pipe (camera methods by name)."""

    def __init__(self, spec: dict, broker: EmbeddedBroker):
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with Dagster's threads
        self._conn, child = ctx.Pipe()
        self._lock = threading.Lock()
        self._proc = ctx.Process(
            target=_fleet_main, args=(spec, broker.host, broker.port, child, os.getpid()), name="sim-fleet", daemon=True
        )
        self._proc.start()
        self.devices_config = self._reply(300)

    def _reply(self, timeout: float):
        if not self._conn.poll(timeout):
            raise TimeoutError(f"simulated fleet process did not answer within {timeout:g} s")
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"simulated fleet: {value}")
        return value

    def _call(self, command: str, args=None, timeout: float = 60):
        with self._lock:
            self._conn.send((command, args))
            return self._reply(timeout)

    def camera(self, device_id: str, method: str, **kwargs):
        return self._call("camera", (device_id, method, kwargs))

    def truths(self) -> dict[str, dict]:
        return self._call("truths")

    def cpu_seconds(self) -> float:
        return self._call("cpu")

    @contextmanager
    def calibrated(self):
        """SimFleet.calibrated() in the child: hidden offsets zero inside, restored after."""
        self._call("calibrate")
        try:
            yield
        finally:
            self._call("uncalibrate")

    def stop(self) -> None:
        if self._proc.is_alive():
            try:
                self._call("stop", timeout=30)
            except (TimeoutError, RuntimeError, OSError, EOFError):
                pass
            self._proc.join(30)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)


class BenchSite:
    """Broker + fleet process + Slack receiver + config folder; `.platform` runs calmon's jobs."""

    def __init__(
        self,
        devices: int,
        deployments: int,
        seed: int,
        stabilize_time: float,
        timeout: float,
        per_deployment: int = 64,
        root: Path | None = None,
        console_log_level: str = "WARNING",
        snapshot_retention_hours: float | None = None,
        resolution: tuple[int, int] = RESOLUTION,
    ):
        self.keep = root is not None
        self.root = Path(root or tempfile.mkdtemp(prefix="calmon-bench-")).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.spec = fleet_spec(devices, deployments, seed, resolution=resolution)
        self.broker = EmbeddedBroker().start()
        self.slack = SlackReceiver().start()
        self.fleet: FleetProcess | None = None
        try:
            self.fleet = FleetProcess(self.spec, self.broker)
            self.config_dir = self.root / "configs"
            self.config_dir.mkdir(exist_ok=True)
            import yaml

            (self.config_dir / "devices.yaml").write_text(yaml.safe_dump(self.fleet.devices_config, sort_keys=False))
            self.per_deployment = per_deployment
            self.snapshot_retention_hours = snapshot_retention_hours
            self.write_settings(stabilize_time, timeout)
            os.environ[WEBHOOK_ENV] = self.slack.url
            os.environ["DAGSTER_HOME"] = str(self.root / "dagster_home")
            os.environ["CALMON_CONFIG_DIR"] = str(self.config_dir)  # for processes Dagster starts
            from calmon_cli.platform import Platform

            self.platform = Platform(
                str(self.config_dir), home=str(self.root / "dagster_home"), console_log_level=console_log_level
            )
        except BaseException:
            self.close()
            raise

    def write_settings(self, stabilize_time: float, timeout: float, executor: str = "in_process") -> None:
        """calibration_monitoring.ini; the assets read it at every run, so a rewrite applies to the
        next cycle ([execution] executor applies where the definitions are loaded next)."""
        (self.config_dir / "calibration_monitoring.ini").write_text(
            local_site_settings(
                self.root,
                webhook_env=WEBHOOK_ENV,
                threshold_deg=THRESHOLD_DEG,
                stabilize_time=stabilize_time,
                timeout=timeout,
                reference_stabilize_time=0.5,
                max_concurrent_per_deployment=self.per_deployment,
                snapshot_retention_hours=self.snapshot_retention_hours,
                written_by="a calmon benchmark",
            )
            + f"\n[execution]\nexecutor = {executor}\n"
        )

    @property
    def device_ids(self) -> list[str]:
        return [d["id"] for dep in self.spec["deployments"] for d in dep["devices"]]

    def collect_references(self, progress=None):
        """Reference scans of calibrated cameras; the hidden offsets apply afterwards."""
        with self.fleet.calibrated():
            return self.platform.collect_references(progress=progress)

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.stop()
        self.slack.stop()
        self.broker.stop()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> BenchSite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
