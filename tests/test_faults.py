"""Capture- and cluster-side faults, end to end through Dagster: one case per fault.

Each case runs a check cycle over a few devices of one simulated site (real broker, HTTP cameras,
the fake kubectl on PATH for port-forwards), with the fault on one device, and asserts that
device's row, its Slack message as the local receiver got it, and that the other devices of the
same cycle came out successful with the offsets the simulator hides.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import dagster as dg
import pytest
import yaml

from calmon_assets.defs.partitions import check_partition_key, current_time_key
from calmon_core.models import CalibrationResult, CheckStatus
from calmon_sim.broker import EmbeddedBroker
from tests.sim_site import Site, device, start_site, stop_site

pytestmark = pytest.mark.slow

T = TypeVar("T")
NOW = datetime.now(UTC)
FAKE_KUBECTL = Path(__file__).resolve().parent / "fake_kubectl"
TIMEOUT_S = 8  # the site's capture timeout: long enough for a broker restart, short for the failures
UNKNOWN_CONTEXT = "city-south-prod"


def hour(k: int) -> str:
    return current_time_key(NOW - timedelta(hours=k))


# healthy devices of every cycle and what their rows must say
OTHERS = {"cam-ok": CheckStatus.ok, "cam-bad": CheckStatus.breach}
DEPLOYMENTS = [
    {
        "name": "harbor",
        "devices": [
            device("cam-ok", 11, yaw=5.0),
            device("cam-bad", 12, yaw=10.0, offset=(0.8, -0.3, 0.1)),
            # the fault device; patrols in quick short moves once the frozen-telemetry case turns it on
            device("cam-f", 14, offset=(0.3, -0.2, 0.0), patrol_pause_s=[0.05, 0.15], patrol_range_deg=[12.0, 2.0]),
        ],
    },
    {"name": "tunnel", "devices": [device("cam-k", 15, offset=(-0.6, 0.2, 0.0))]},
    {"name": "ghost", "devices": [device("cam-g", 16)]},
]
KUBECTL_DEPLOYMENTS = {"tunnel": "fake-cluster", "ghost": UNKNOWN_CONTEXT}
NAMESPACE = "cams"


@pytest.fixture(scope="module")
def site_broker():
    """This module's own broker: one case restarts it."""
    b = EmbeddedBroker(prefer=os.environ.get("CALMON_TEST_BROKER", "mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, site_broker):
    monkeypatch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("faults")
    s = start_site(root, site_broker, DEPLOYMENTS, None, monkeypatch, timeout=TIMEOUT_S)
    # tunnel and ghost are reached through `kubectl port-forward` (the fake one on PATH)
    devices_yaml = s.config_dir / "devices.yaml"
    doc = yaml.safe_load(devices_yaml.read_text())
    services = {f"{NAMESPACE}/mosquitto:1883": site_broker.port}
    for dep in doc["deployments"]:
        if dep["name"] in KUBECTL_DEPLOYMENTS:
            dep.update(
                access="kubectl",
                kube_context=KUBECTL_DEPLOYMENTS[dep["name"]],
                namespace=NAMESPACE,
                mqtt={"service": "mosquitto", "port": 1883},
            )
            for dev in dep["devices"]:
                dev["camera"] = {"service": dev["id"], "port": 80, "ptz": "http"}
                services[f"{NAMESPACE}/{dev['id']}:80"] = s.fleet.cameras[dev["id"]].port
    devices_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("PATH", f"{FAKE_KUBECTL}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_KUBECTL_CONTEXTS", "fake-cluster,other-cluster")
    monkeypatch.setenv("FAKE_KUBECTL_SERVICES", json.dumps(services))
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(root / "kubectl-calls.jsonl"))
    yield s
    stop_site(s)
    monkeypatch.undo()


@pytest.fixture(scope="module")
def platform(site):
    return site.platform_with_references(device_ids=["cam-ok", "cam-bad", "cam-f", "cam-k"])


# --------------------------------------------------------------------------- helpers


def run_cycle(platform, time_key: str, target: str) -> dict[str, CalibrationResult]:
    runs = platform.run_check_cycle(time_key, device_ids=[target, *OTHERS])
    return rows_of(platform, runs, time_key)


def rows_of(platform, runs, time_key: str) -> dict[str, CalibrationResult]:
    # a failed check is a successful run with a failed row: no run may crash
    assert [(r.device_id, r.error) for r in runs if not r.succeeded] == []
    table = platform.resources["results_table"].get_client()
    rows = {r.device_id: table.read(r.device_id, time_key) for r in runs}
    assert all(row is not None for row in rows.values()), rows
    return rows


def assert_estimated(site: Site, row: CalibrationResult, status: CheckStatus) -> None:
    truth = site.fleet.cameras[row.device_id].truth()["true_offset"]
    assert row.success, (row.device_id, row.failure_log)
    assert row.status == status and row.failure_log is None, (row.device_id, row.status, row.failure_log)
    for axis in ("yaw", "pitch", "roll"):
        assert getattr(row, f"{axis}_offset") == pytest.approx(truth[axis], abs=0.05), (row.device_id, axis)


def assert_others_unaffected(site: Site, rows: dict[str, CalibrationResult]) -> None:
    for device_id, status in OTHERS.items():
        assert_estimated(site, rows[device_id], status)


def assert_failed(row: CalibrationResult, *phrases: str) -> None:
    assert row.success is False and row.status == CheckStatus.failed, (row.status, row.failure_log)
    assert row.yaw_offset is None and row.pitch_offset is None and row.roll_offset is None
    assert row.failure_log.startswith(f"capture failed: device {row.device_id}: "), row.failure_log
    for phrase in phrases:
        assert phrase in row.failure_log, (phrase, row.failure_log)


def alerts(platform, site: Site, rows: dict[str, CalibrationResult]) -> dict[str, str]:
    """The cycle's Slack messages by device, checked to be the ones the receiver got."""
    sent = platform.send_alerts()
    assert len(sent) == len(rows), sent
    assert site.slack.texts()[-len(sent) :] == sent  # they travelled over HTTP
    by_device = {d: next(t for t in sent if f"*{d}*" in t) for d in rows}
    assert by_device["cam-ok"].startswith("✅ *harbor* / *cam-ok*: within 0.5°")
    assert by_device["cam-bad"].startswith("🚨 *harbor* / *cam-bad*: calibration offset above 0.5°")
    return by_device


def assert_failed_message(text: str, row: CalibrationResult, *phrases: str) -> None:
    assert text.startswith(f"❌ *{row.deployment_name}* / *{row.device_id}*: check failed"), text
    assert f"reason: capture failed: device {row.device_id}: " in text
    for phrase in phrases:
        assert phrase in text, (phrase, text)


def capture_telemetry(platform, device_id: str, time_key: str) -> dict:
    """The device's telemetry summary in its deployment's query_capture materialization's metadata."""
    deployment = platform.config.fleet.find(device_id)[0].name
    records = platform.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("query_capture"), asset_partitions=[str(check_partition_key(deployment, time_key))]
        ),
        limit=1,
    ).records
    assert records, f"no query_capture for {deployment} {time_key}"
    return records[0].asset_materialization.metadata["captures"].value[device_id]["telemetry"]


def wait_for(what: str, condition: Callable[[], T], timeout: float = 30.0) -> T:
    """Poll until `condition()` is truthy (an event to act on, not a measured duration)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


# --- sockets and processes as the kernel sees them (the fake kubectl is a real child process)

ESTABLISHED, LISTEN = "01", "0A"


def tcp_table() -> list[tuple[int, int, str, int]]:
    """(local port, remote port, state, inode) of every IPv4 TCP socket."""
    rows = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        rows.append(
            (int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16), fields[3], int(fields[9]))
        )
    return rows


def connections_to(port: int) -> int:
    return sum(1 for _, remote, state, _ in tcp_table() if remote == port and state == ESTABLISHED)


def forwards_to(service: str) -> dict[int, int]:
    """pid -> local port of our live kubectl port-forwards to svc/<service>."""
    found: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            parent = re.search(r"^PPid:\s+(\d+)", (proc / "status").read_text(), re.MULTILINE)
            if (
                not parent
                or int(parent.group(1)) != os.getpid()
                or b"port-forward" not in argv
                or f"svc/{service}".encode() not in argv
            ):
                continue
            inodes = {
                int(m) for fd in (proc / "fd").iterdir() for m in re.findall(r"socket:\[(\d+)\]", os.readlink(fd))
            }
        except (OSError, AttributeError):
            continue  # exited meanwhile
        ports = [local for local, _, state, inode in tcp_table() if state == LISTEN and inode in inodes]
        if ports:
            found[int(proc.name)] = ports[0]
    return found


def kubectl_calls(service: str) -> int:
    path = Path(os.environ["FAKE_KUBECTL_LOG"])
    lines = path.read_text().splitlines() if path.exists() else []
    return sum(1 for line in lines if f"svc/{service}" in json.loads(line))


def in_background(fn: Callable[[], T]):
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future


# --------------------------------------------------------------------------- the faults


def test_camera_offline(platform, site):
    cam = site.fleet.cameras["cam-f"]
    cam.set_faults(offline=True)
    try:
        rows = run_cycle(platform, hour(1), "cam-f")
    finally:
        cam.clear_faults()
    row = rows["cam-f"]
    assert_failed(row, f"camera offline: connection refused ({cam.base_url}/snapshot.jpg)")
    assert row.deployment_name == "harbor" and row.mode == "passive"
    assert_others_unaffected(site, rows)
    texts = alerts(platform, site, rows)
    assert_failed_message(texts["cam-f"], row, "camera offline: connection refused")


def test_telemetry_never_settles(platform, site):
    cam = site.fleet.cameras["cam-f"]
    cam.set_faults(never_settle=True)
    try:
        rows = run_cycle(platform, hour(2), "cam-f")
    finally:
        cam.clear_faults()
    row = rows["cam-f"]
    assert_failed(row, f"telemetry did not hold still for 1 s within the {TIMEOUT_S} s timeout", "the pose changed")
    assert_others_unaffected(site, rows)
    texts = alerts(platform, site, rows)
    assert_failed_message(texts["cam-f"], row, "telemetry did not hold still for 1 s")


def test_frozen_telemetry_while_the_camera_moves(platform, site):
    cam = site.fleet.cameras["cam-f"]
    cam.set_faults(frozen_telemetry=True)  # telemetry repeats this pose ...
    cam.set_patrol(True)  # ... while the head wanders in short quick moves
    try:
        rows = run_cycle(platform, hour(3), "cam-f")
    finally:
        cam.set_patrol(False)
        cam.clear_faults()
        cam.move_to(0.0, 0.0, 1.0)  # back where the other cases expect it
        wait_for("cam-f back home", lambda: not cam.is_moving())
    row = rows["cam-f"]
    # not a stable success with offsets off by the patrol's moves: a failure that says why
    assert_failed(
        row,
        f"no frame could be kept within the {TIMEOUT_S} s timeout",
        "the image moved while telemetry stayed still (frozen telemetry?)",
    )
    assert_others_unaffected(site, rows)
    texts = alerts(platform, site, rows)
    assert_failed_message(texts["cam-f"], row, "the image moved while telemetry stayed still (frozen telemetry?)")


def test_garbage_mqtt_payloads(platform, site):
    cam = site.fleet.cameras["cam-f"]
    cam.set_faults(garbage_mqtt=True)
    try:
        rows = run_cycle(platform, hour(4), "cam-f")
    finally:
        cam.clear_faults()
    assert_estimated(site, rows["cam-f"], CheckStatus.ok)
    telemetry = capture_telemetry(platform, "cam-f", hour(4))
    assert telemetry["garbage_count"] > 0 and telemetry["received_count"] > 0
    assert capture_telemetry(platform, "cam-ok", hour(4))["garbage_count"] == 0
    assert_others_unaffected(site, rows)
    texts = alerts(platform, site, rows)
    assert texts["cam-f"].startswith("✅ *harbor* / *cam-f*: within 0.5°")


def test_broker_restart_mid_capture(platform, site, site_broker):
    cams = [site.fleet.cameras[d] for d in ("cam-f", *OTHERS)]
    before = connections_to(site_broker.port)  # the simulated fleet's publisher
    # jittering telemetry holds every capture in its wait for stillness, so the restart lands
    # while all three latches are connected
    for cam in cams:
        cam.set_faults(never_settle=True)
    try:
        cycle = in_background(lambda: platform.run_check_cycle(hour(5), device_ids=["cam-f", *OTHERS]))
        wait_for("three latches connected", lambda: connections_to(site_broker.port) >= before + 3)
        site_broker.restart(down_seconds=0.5)
        wait_for("the latches back after the restart", lambda: connections_to(site_broker.port) >= before + 3)
    finally:
        for cam in cams:
            cam.clear_faults()
    rows = rows_of(platform, cycle.result(), hour(5))
    assert_estimated(site, rows["cam-f"], CheckStatus.ok)
    assert capture_telemetry(platform, "cam-f", hour(5))["telemetry_connections"] >= 2  # reconnected
    assert_others_unaffected(site, rows)
    texts = alerts(platform, site, rows)
    assert texts["cam-f"].startswith("✅ *harbor* / *cam-f*: within 0.5°")


def test_corrupt_jpeg(platform, site):
    cam = site.fleet.cameras["cam-f"]
    cam.set_faults(corrupt_jpeg=True)
    try:
        rows = run_cycle(platform, hour(6), "cam-f")
    finally:
        cam.clear_faults()
    row = rows["cam-f"]
    assert_failed(row, "snapshot cannot be decoded", f"({cam.base_url}/snapshot.jpg)")
    assert_others_unaffected(site, rows)
    texts = alerts(platform, site, rows)
    assert_failed_message(texts["cam-f"], row, "snapshot cannot be decoded")


def test_port_forward_dies_mid_check(platform, site):
    cam = site.fleet.cameras["cam-k"]
    calls_before = {s: kubectl_calls(s) for s in ("cam-k", "mosquitto")}
    cam.set_faults(never_settle=True)  # holds the capture while its forwards are killed
    try:
        cycle = in_background(lambda: platform.run_check_cycle(hour(7), device_ids=["cam-k", *OTHERS]))
        # the broker's forward dies under the connected latch: it must come back through a new one
        ((mqtt_pid, mqtt_port),) = wait_for(
            "the latch connected through its forward",
            lambda: [(pid, port) for pid, port in forwards_to("mosquitto").items() if connections_to(port)],
        )
        os.kill(mqtt_pid, signal.SIGUSR1)  # "lost connection to pod"
        wait_for(
            "the latch connected through a restarted forward",
            lambda: [pid for pid, port in forwards_to("mosquitto").items() if pid != mqtt_pid and connections_to(port)],
        )
        # then the camera's forward dies before the grab
        (camera_pid,) = wait_for("the camera's forward", lambda: list(forwards_to("cam-k")))
        os.kill(camera_pid, signal.SIGUSR1)
        wait_for("the camera's forward gone", lambda: camera_pid not in forwards_to("cam-k"))
    finally:
        cam.clear_faults()
    runs = cycle.result()
    rows = rows_of(platform, runs, hour(7))
    assert_estimated(site, rows["cam-k"], CheckStatus.breach)
    assert rows["cam-k"].deployment_name == "tunnel"
    # each forward was started twice: once for the check, once after it died
    assert {s: kubectl_calls(s) - n for s, n in calls_before.items()} == {"cam-k": 2, "mosquitto": 2}
    telemetry = capture_telemetry(platform, "cam-k", hour(7))
    assert telemetry["camera_reresolved"] == 1 and telemetry["telemetry_reresolved"] == 1
    run_id = next(r.run_id for r in runs if r.device_id == "cam-k")
    logs = [e.user_message for e in platform.instance.all_logs(run_id)]
    assert any("cam-k" in m and "port-forward restarted" in m for m in logs)
    assert not forwards_to("cam-k") and not forwards_to("mosquitto")  # all closed after the check
    assert_others_unaffected(site, rows)
    texts = alerts(platform, site, rows)
    assert texts["cam-k"].startswith("🚨 *tunnel* / *cam-k*: calibration offset above 0.5°")


def test_unknown_kube_context(platform, site):
    rows = run_cycle(platform, hour(8), "cam-g")
    row = rows["cam-g"]
    assert_failed(
        row,
        f"port-forward to svc/cam-g:80 in namespace '{NAMESPACE}'",
        f"unknown kube context '{UNKNOWN_CONTEXT}'",
        "check kube_context in devices.yaml",
    )
    assert row.deployment_name == "ghost"
    assert_others_unaffected(site, rows)
    texts = alerts(platform, site, rows)
    assert_failed_message(texts["cam-g"], row, f"unknown kube context '{UNKNOWN_CONTEXT}'")
