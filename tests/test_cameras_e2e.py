"""End to end through Dagster for every camera protocol, authentication on: reference scans,
passive and active checks recover the hidden offsets over each simulated dialect (real HTTP
Digest, real SOAP with WS-Security), with telemetry sent the way different sites send it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from calmon_assets.defs.partitions import current_time_key
from tests.sim_site import device, start_site, stop_site

pytestmark = pytest.mark.slow

OFFSET = (0.8, -0.3, 0.1)
TOLERANCE_DEG = 0.005
MAX_SIGMA_DEG = 0.01
HOUR = current_time_key(datetime.now(UTC) - timedelta(hours=1))
ACTIVE_STOPS = [[-15.0, 0.0, 1.0], [20.0, -3.0, 1.0]]
# how each protocol's cameras report their pose (as different sites do)
TELEMETRY = {
    "http": {},  # periodic MQTT in degrees
    "vapix": {"telemetry_mode": "on_change"},  # retained MQTT, only when the pose changes
    "isapi": {"telemetry_units": "tenths", "telemetry_tilt_inverted": True},  # Hikvision-style numbers
    "onvif": {"telemetry_mode": "none"},  # no MQTT: calmon polls GetStatus
}
PROTOCOLS = list(TELEMETRY)


def cameras() -> list[dict]:
    out = []
    for index, protocol in enumerate(PROTOCOLS):
        common = {"protocol": protocol, "username": "calmon", "password": f"pw-{protocol}-Zq9!", **TELEMETRY[protocol]}
        out.append(device(f"{protocol}-passive", 40 + index, yaw=5.0, offset=OFFSET, **common))
        out.append(
            device(
                f"{protocol}-active",
                50 + index,
                yaw=0.0,
                offset=OFFSET,
                mode="active",
                active_ptz_stops=ACTIVE_STOPS,
                **common,
            )
        )
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory, shared_broker):
    monkeypatch = pytest.MonkeyPatch()
    s = start_site(
        tmp_path_factory.mktemp("cameras"),
        shared_broker,
        [{"name": "vendors", "devices": cameras()}],
        None,
        monkeypatch,
    )
    yield s
    stop_site(s)
    monkeypatch.undo()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reference_and_checks_recover_offsets(site, protocol):
    platform = site.platform()
    ids = [f"{protocol}-passive", f"{protocol}-active"]
    with site.fleet.calibrated(ids):
        runs = platform.collect_references(ids)
    assert [r.error for r in runs if not r.succeeded] == []
    runs = platform.run_check_cycle(HOUR, ids)
    assert [r.error for r in runs if not r.succeeded] == []
    table = platform.resources["results_table"].get_client()
    for device_id in ids:
        row = table.read(device_id, HOUR)
        assert row is not None and row.success, (device_id, row and row.failure_log)
        assert row.mode == ("active" if device_id.endswith("active") else "passive")
        found = (row.yaw_offset, row.pitch_offset, row.roll_offset)
        sigma = (row.yaw_uncertainty, row.pitch_uncertainty, row.roll_uncertainty)
        print(f"{device_id}: offsets {found} ± {sigma}")
        for axis, value, s, true in zip(("yaw", "pitch", "roll"), found, sigma, OFFSET, strict=True):
            # the row claims value ± σ: the claim must be tight and must hold. One frame's error
            # moves with the CPU's SIMD path (OpenCV's dispatch): roll 0.0066° off at σ 0.0054°
            # on an AVX2-only machine, so a fixed 0.005° alone is not a property of calmon.
            assert s <= MAX_SIGMA_DEG, (device_id, axis, s)
            assert abs(value - true) <= max(TOLERANCE_DEG, 3 * s), (device_id, axis, value, s)
