"""Day and night, seasons, the reference bank and references that keep their gauge.

Real rendered scenes (small images, fixed seeds), the simulator's lighting, and a simulated camera
over real HTTP.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from calmon_core.capture_format import CaptureFormatError
from calmon_core.estimation import estimate_offsets
from calmon_core.gauge import frame_uncertainties, gauge_uncertainty, read_gauge
from calmon_core.photometry import structure_problem
from calmon_core.reference_bank import (
    GROW_MAX_SIGMA_DEG,
    add_bank_entry,
    bank_summary,
    estimate_with_bank,
    grow_bank_entry,
    image_regime,
    register_scan,
    replace_reference,
)
from calmon_core.solar import regime_at
from calmon_core.stacking import LOW_LIGHT_FRAMES
from calmon_sim.camera import SimCamera
from calmon_sim.cases import QueryView
from calmon_sim.fleet_spec import FleetSpec
from calmon_sim.lighting import Conditions, SceneChange, lit_scene, render_frame
from calmon_sim.lit_cases import write_query, write_scan
from calmon_sim.scene import load_scene

W, H = 640, 360
YAWS, PITCHES = [-25.0, 0.0, 25.0], [0.0]
NIGHT = Conditions("night")
DUSK = Conditions("dusk", twilight=0.9)
EARLY_DUSK = Conditions("dusk", twilight=0.5)  # less noise: frames confident enough to grow the bank
AXES = ("yaw", "pitch", "roll")


@pytest.fixture(scope="module")
def city(scenes_dir):
    return load_scene(str(scenes_dir / "equirec2perspec_image.jpg"))


def scan(folder, scene, **kw):
    return write_scan(folder, scene, YAWS, PITCHES, width=W, height=H, **kw)


def views(offset, n=2):
    return [QueryView((-12.0 + 24.0 * i, 1.0, 0.0), offset, 50.0) for i in range(n)]


def query(folder, scene, offset, conditions=None, n=2, day=1.0, rng=None):
    return write_query(folder, scene, conditions or Conditions(), views(offset, n), width=W, height=H, day=day, rng=rng)


# ---------------------------------------------------------------------------- the simulator


def test_night_is_monochrome_noisy_and_shows_lamps_that_day_does_not(city):
    rng = np.random.default_rng(0)
    day = render_frame(city, Conditions(), 20.0, 0.0, 0.0, 60.0, W, H, rng)
    night = render_frame(city, NIGHT, 20.0, 0.0, 0.0, 60.0, W, H, rng)
    b, g, r = (night[..., i].astype(int) for i in range(3))
    assert np.array_equal(b, g) and np.array_equal(g, r)  # infrared: no colour at all
    assert image_regime(night) == "night" and image_regime(day) == "day"
    again = render_frame(city, NIGHT, 20.0, 0.0, 0.0, 60.0, W, H, np.random.default_rng(1))
    noise = np.std(night[..., 0].astype(np.float32) - again[..., 0]) / np.sqrt(2)
    assert noise > 5.0  # high gain: heavy sensor noise, different in every frame
    assert np.array_equal(day, render_frame(city, Conditions(), 20.0, 0.0, 0.0, 60.0, W, H, rng))
    # lamps: saturated blobs in the night world where the day world had none
    lit = lit_scene(city, NIGHT).image[..., 0]
    day_world = cv2.cvtColor(city.image, cv2.COLOR_BGR2GRAY)
    assert np.sum((lit >= 250) & (day_world < 200)) > 200


def test_world_changes_stay_in_the_world_when_the_camera_pans(city):
    truck = Conditions(changes=(SceneChange(yaw=20.0, pitch=-3.0, width_deg=10.0, height_deg=4.0),))
    plain = render_frame(city, Conditions(), 20.0, 0.0, 0.0, 60.0, W, H)
    with_truck = render_frame(city, truck, 20.0, 0.0, 0.0, 60.0, W, H)
    changed = np.any(plain != with_truck, axis=2)
    ys, xs = np.nonzero(changed)
    assert abs(xs.mean() - W / 2) < 15  # the truck sits where it was parked: the view's centre
    panned = render_frame(city, truck, 35.0, 0.0, 0.0, 60.0, W, H)
    plain_panned = render_frame(city, Conditions(), 35.0, 0.0, 0.0, 60.0, W, H)
    xs2 = np.nonzero(np.any(panned != plain_panned, axis=2))[1]
    assert xs2.mean() < xs.mean() - 60  # panned right: the truck moved left in the image
    snow = render_frame(city, Conditions(season="winter"), 20.0, -20.0, 0.0, 60.0, W, H)
    ground = cv2.cvtColor(snow, cv2.COLOR_BGR2GRAY)[H // 2 :]
    ground_day = cv2.cvtColor(render_frame(city, Conditions(), 20.0, -20.0, 0.0, 60.0, W, H), cv2.COLOR_BGR2GRAY)
    assert ground.mean() > ground_day[H // 2 :].mean() + 30  # snow on the ground


def test_regime_follows_the_sun():
    paris = (48.85, 2.35)
    assert regime_at(datetime(2026, 12, 2, 12, 0, tzinfo=UTC), *paris) == "day"
    assert regime_at(datetime(2026, 12, 2, 22, 0, tzinfo=UTC), *paris) == "night"
    assert regime_at(datetime(2026, 12, 2, 16, 15, tzinfo=UTC), *paris) == "dusk"


def _http(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def night_fleet_spec(scenes_dir, resolution: tuple[int, int], **device) -> FleetSpec:
    """One camera "cam-n" at site "site" whose clock starts at 22:00 UTC in Paris in December (night)."""
    night = {"start": "2026-12-02T22:00:00Z", "latitude": 48.85, "longitude": 2.35}
    camera = {"id": "cam-n", "scene": str(scenes_dir / "pannellum_examplepano.jpg"), "resolution": list(resolution)}
    return FleetSpec.model_validate(
        {"deployments": [{"name": "site", "devices": [{**camera, "lighting": night, **device}]}]}
    )


def test_camera_follows_its_clock_and_lighting_is_settable_over_http(scenes_dir):
    spec = night_fleet_spec(scenes_dir, (320, 180))
    cam = SimCamera(spec.deployments[0].devices[0], "site").start()
    try:
        status, body = _http(cam.base_url + "/lighting")
        assert status == 200 and json.loads(body)["regime"] == "night"
        image = cv2.imdecode(np.frombuffer(_http(cam.base_url + "/snapshot.jpg")[1], np.uint8), cv2.IMREAD_COLOR)
        assert image_regime(image) == "night"
        status, body = _http(cam.base_url + "/lighting", {"time": "2026-12-02T12:00:00Z"})
        assert status == 200 and json.loads(body)["lighting"]["regime"] == "day"
        image = cv2.imdecode(np.frombuffer(_http(cam.base_url + "/snapshot.jpg")[1], np.uint8), cv2.IMREAD_COLOR)
        assert image_regime(image) == "day"
        status, body = _http(cam.base_url + "/lighting", {"regime": "midnight"})
        assert status == 400 and b"regime" in body
        status, body = _http(cam.base_url + "/lighting", {"colour": 1})
        assert status == 400 and b"colour" in body
    finally:
        cam.stop()


def test_fleet_file_lighting_errors_name_the_key():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="lighting.start"):
        FleetSpec.model_validate(
            {"deployments": [{"name": "s", "devices": [{"id": "c", "lighting": {"start": "2026-12-02T22:00:00"}}]}]}
        )
    with pytest.raises(ValidationError, match="lighting.season"):
        FleetSpec.model_validate(
            {"deployments": [{"name": "s", "devices": [{"id": "c", "lighting": {"season": "monsoon"}}]}]}
        )


# ---------------------------------------------------------------------------- dark frames


def test_dark_frames_with_structure_are_kept_blank_ones_refused(city):
    dim = render_frame(city, Conditions("night", ir_gain=0.08), 20.0, 0.0, 0.0, 60.0, W, H, np.random.default_rng(1))
    grey = cv2.cvtColor(dim, cv2.COLOR_BGR2GRAY)
    assert grey.mean() < 10
    assert structure_problem(grey) is None
    rng = np.random.default_rng(2)
    black = np.clip(rng.normal(4, 2.5, (H, W)), 0, 255).astype(np.uint8)
    assert "too dark" in structure_problem(black)
    assert "blank" in structure_problem(np.full((H, W), 110, np.uint8))


# ---------------------------------------------------------------------------- gauge


def test_rescan_keeps_the_gauge_and_rebase_starts_a_new_one(city, tmp_path):
    reference = scan(tmp_path / "reference_scan", city)
    original_gauge = read_gauge(reference)["gauge_id"]
    drift = (0.8, 0.0, 0.0)
    rescan = scan(tmp_path / "rescan", city, offset=drift, day=90)
    q = query(tmp_path / "q", city, drift)
    before = estimate_offsets(reference, q)
    assert before.success and abs(before.offsets_deg["yaw"] - 0.8) < 0.01

    reg = replace_reference(reference, rescan)
    assert reg.method == "registered" and reg.gauge_id == original_gauge
    assert abs(reg.correction_deg["yaw"] - 0.8) < 0.01
    after = estimate_offsets(reference, q)
    assert after.success
    for axis, want in zip(("yaw", "pitch", "roll"), drift, strict=True):
        assert abs(after.offsets_deg[axis] - want) < 0.01, after.offsets_deg
        # the registration's own error is now part of every offset against the new scan
        assert after.uncertainty_deg[axis] >= reg.uncertainty_deg[axis] > 0
    assert read_gauge(reference)["gauge_id"] == original_gauge

    rebased = replace_reference(reference, rescan, rebase=True)
    assert rebased.method == "rebased" and rebased.gauge_id != original_gauge
    fresh = estimate_offsets(reference, q)
    assert fresh.success and max(abs(v) for v in fresh.offsets_deg.values()) < 0.01
    assert read_gauge(reference)["gauge_id"] == rebased.gauge_id


def test_registration_refuses_a_scan_that_does_not_overlap(city, scenes_dir, tmp_path):
    reference = scan(tmp_path / "reference_scan", city)
    elsewhere = scan(tmp_path / "elsewhere", load_scene(str(scenes_dir / "aframe_puydesancy.jpg")))
    with pytest.raises(CaptureFormatError, match="do not overlap"):
        register_scan(elsewhere, reference)


# ---------------------------------------------------------------------------- bank


def test_night_bank_entry_is_registered_and_picked_for_night_queries(city, tmp_path):
    reference = scan(tmp_path / "reference_scan", city)
    bank_offset = (0.3, -0.2, 0.1)  # the camera's error the night the entry was collected
    # collected as calmon's capture takes a night view, a burst stacked into each frame: a single
    # infrared snapshot per pose registers to 0.030 deg, at the limit (any keypoint cap)
    night_scan = scan(
        tmp_path / "night",
        city,
        conditions=NIGHT,
        offset=bank_offset,
        rng=np.random.default_rng(5),
        burst=LOW_LIGHT_FRAMES,
    )
    reg = add_bank_entry(reference, night_scan, "night", regime="night")
    assert reg.gauge_id == read_gauge(reference)["gauge_id"]
    for axis, want in zip(("yaw", "pitch", "roll"), bank_offset, strict=True):
        assert abs(reg.correction_deg[axis] - want) < 0.03, reg.correction_deg
    offset = (0.55, 0.1, -0.05)
    q = query(tmp_path / "q-night", city, offset, NIGHT)
    result = estimate_with_bank(reference, q, diagnostics_dir=tmp_path / "diagnostics")
    assert result.regime == "night" and result.entry == "night"
    assert result.estimate.success
    # every frame has its picture, against the entry that answered it
    pictures = [Path(f.diagnostic_picture) for f in result.estimate.frames]
    assert sorted(p.name for p in (tmp_path / "diagnostics").iterdir()) == sorted(p.name for p in pictures)
    assert all(p.read_bytes()[:3] == b"\xff\xd8\xff" for p in pictures)
    for axis, want in zip(("yaw", "pitch", "roll"), offset, strict=True):
        assert abs(result.estimate.offsets_deg[axis] - want) < 0.03, result.estimate.offsets_deg
    row = result.to_json_dict()
    assert row["bank_entry"] == "night" and row["gauge_id"] == reg.gauge_id
    day_q = query(tmp_path / "q-day", city, offset)
    day = estimate_with_bank(reference, day_q)
    assert day.regime == "day" and day.entry == "reference" and day.estimate.success
    assert [e["entry"] for e in bank_summary(reference)] == ["reference", "night"]


def test_a_confident_checks_frames_grow_a_bank_entry_in_the_original_gauge(city, tmp_path):
    reference = scan(tmp_path / "reference_scan", city)
    offset = (0.4, 0.0, 0.0)
    q = query(tmp_path / "q-dusk", city, offset, EARLY_DUSK)  # frames confident enough to grow the bank
    first = estimate_with_bank(reference, q)
    assert first.estimate.success and first.regime == "dusk"
    added = grow_bank_entry(reference, "dusk", q, first.estimate, regime="dusk")
    assert added >= 1
    # the grown frames' orientations are estimates: their error is the entry's registration error
    grown = [f for f in first.estimate.frames if f.success and max(f.uncertainty_deg.values()) <= GROW_MAX_SIGMA_DEG]
    assert len(grown) == added
    entry_sigma = gauge_uncertainty(read_gauge(reference / "bank" / "dusk"))
    for a in AXES:
        rms = float(np.sqrt(np.mean([f.uncertainty_deg[a] ** 2 for f in grown])))
        assert entry_sigma[a] == pytest.approx(rms, abs=1e-6) and entry_sigma[a] > 0
    later_offset = (0.45, -0.05, 0.0)
    # another grab: its own sensor noise (the same noise in both would pull the match to no motion)
    later_query = query(tmp_path / "q-dusk-2", city, later_offset, DUSK, day=2, rng=np.random.default_rng(7))
    # the grown entry is a reference in the original gauge on its own (which entry the bank then
    # picks for a query is a matter of inliers between entries that both explain it)
    later = estimate_offsets(reference / "bank" / "dusk", later_query, check_identity=False)
    assert later.success
    assert all(abs(later.offsets_deg[a] - o) < 0.01 for a, o in zip(AXES, later_offset, strict=True))
    assert all(later.uncertainty_deg[a] >= entry_sigma[a] for a in AXES), (later.uncertainty_deg, entry_sigma)
    # re-estimated, the first query is not compared with its own frames in the entry
    again = estimate_with_bank(reference, q)
    assert "dusk" not in again.entries and again.estimate.success


def test_a_damaged_frame_uncertainty_in_a_gauge_record_is_an_error_naming_it():
    record = {"gauge_id": "gauge-0123", "frame_uncertainty_deg": {"images/003.jpg": {"yaw": -1.0}}}
    with pytest.raises(CaptureFormatError, match=r"gauge-0123: frame_uncertainty_deg\.images/003\.jpg\.yaw"):
        frame_uncertainties(record)
    ok = {"gauge_id": "g", "frame_uncertainty_deg": {"a.jpg": {"yaw": 0.002, "pitch": 0.001, "roll": 0.003}}}
    assert frame_uncertainties(ok) == {"a.jpg": {"yaw": 0.002, "pitch": 0.001, "roll": 0.003}}


def test_a_check_grows_the_stored_bank_and_another_worker_gets_it(city, tmp_path):
    """Growth is for frames estimated confidently (sigma <= GROW_MAX_SIGMA_DEG on every axis): at
    dusk against the day reference; infrared night frames usually are not (roll sigma ~0.03 deg),
    so a night entry is collected on purpose (collect-references --regime night)."""
    from calmon_assets.defs.checks.measure import measure_offsets
    from calmon_assets.defs.references.collect import store_reference
    from calmon_core.check import CaptureOutcome
    from resources.object_store import LocalObjectStore

    store = LocalObjectStore(tmp_path / "store")
    store_reference(store, "site", "cam-1", scan(tmp_path / "day", city), tmp_path / "cache-a")

    def check(name, offset, day, cache, seed, grow=True):
        folder = query(tmp_path / name, city, offset, EARLY_DUSK, day=day, rng=np.random.default_rng(seed))
        outcome = CaptureOutcome(
            deployment_name="site",
            device_id="cam-1",
            time_key="2026-12-01-17:00",
            query_key=name,
            mode="active",
            local_folder=str(folder),
        )
        return measure_offsets(store, outcome, tmp_path / cache, 0.5, log=None, grow_bank=grow)

    first = check("q1", (0.3, 0.1, 0.0), 1, "cache-a", seed=1)
    assert first.estimate["success"] and first.estimate["bank_entry"] == "reference"
    assert any("bank entry dusk grew by 2 frame(s)" in n for n in first.notes)
    assert store.exists("site/cam-1/reference_scan/bank/dusk/manifest.json")
    # another worker (an empty cache) finds the grown entry in the store and uses it
    offset = (0.35, 0.05, 0.0)
    second = check("q2", offset, 2, "cache-b", seed=2, grow=False)
    assert (tmp_path / "cache-b/site/cam-1/reference_scan/bank/dusk/manifest.json").is_file()
    assert second.estimate["success"] and set(second.estimate["bank_entries_per_frame"]) <= {"dusk", "reference"}
    assert all(abs(second.estimate["offsets_deg"][a] - o) < 0.01 for a, o in zip(AXES, offset, strict=True))
    # without growth, nothing was added
    assert not any("grew" in n for n in second.notes)


# ---------------------------------------------------------------------------- storing re-collections


def test_stored_recollection_keeps_the_gauge_and_a_regime_adds_a_bank_entry(city, tmp_path):
    from calmon_assets.defs.references.collect import store_reference
    from calmon_core.capture_format import read_capture
    from resources.object_store import LocalObjectStore

    store = LocalObjectStore(tmp_path / "store")

    def collect(name, cache, **kw):
        return store_reference(store, "site", "cam-1", scan(tmp_path / name, city, **kw), tmp_path / cache)

    first = collect("first", "cache-a")
    assert first["method"] == "rebased"
    drift = (0.6, 0.0, 0.0)
    again = collect("again", "cache-b", offset=drift, day=90)  # another machine: its cache is empty
    assert again["method"] == "registered" and again["gauge_id"] == first["gauge_id"]
    assert abs(again["correction_deg"]["yaw"] - 0.6) < 0.01

    night = store_reference(
        store,
        "site",
        "cam-1",
        scan(tmp_path / "night", city, conditions=NIGHT, rng=np.random.default_rng(5)),
        tmp_path / "cache-a",
        regime="night",
    )
    assert night["bank_entry"] == "night" and night["gauge_id"] == first["gauge_id"]
    fresh = tmp_path / "fresh"
    store.download_folder("site/cam-1/reference_scan", fresh)
    assert read_gauge(fresh)["gauge_id"] == first["gauge_id"]
    assert (read_capture(fresh).model_extra or {}).get("bank") == ["night"]
    assert [e["entry"] for e in bank_summary(fresh)] == ["reference", "night"]
    with pytest.raises(ValueError, match="bank entries"):
        store_reference(store, "site", "cam-1", tmp_path / "again", tmp_path / "cache-c", rebase=True)
    with pytest.raises(ValueError, match="regime must be one of"):
        store_reference(store, "site", "cam-1", tmp_path / "again", tmp_path / "cache-c", regime="noon")


def test_a_checks_row_names_the_bank_entry_and_an_unmatched_night_view_is_expected(city, scenes_dir, tmp_path):
    from calmon_assets.defs.checks.measure import measure_offsets
    from calmon_assets.defs.references.collect import store_reference
    from calmon_core.check import CaptureOutcome, CheckPolicy, evaluate_check
    from resources.object_store import LocalObjectStore

    store, cache = LocalObjectStore(tmp_path / "store"), tmp_path / "cache"
    first = store_reference(store, "site", "cam-1", scan(tmp_path / "day", city), cache)
    night_scan = scan(tmp_path / "night", city, conditions=NIGHT, rng=np.random.default_rng(5))
    store_reference(store, "site", "cam-1", night_scan, cache, regime="night")

    def check(folder):
        outcome = CaptureOutcome(
            deployment_name="site",
            device_id="cam-1",
            time_key="2026-12-01-23:00",
            query_key=folder.name,
            mode="passive",
            local_folder=str(folder),
        )
        measurement = measure_offsets(store, outcome, cache, 0.5, log=None)
        row = evaluate_check(
            outcome,
            measurement.estimate,
            CheckPolicy(threshold_deg=0.5),
            check_time=datetime(2026, 12, 1, 23, tzinfo=UTC),
            algorithm_version="test",
            failure=measurement.failure,
            notes=measurement.notes,
            gauge_id=measurement.gauge_id,
        )
        return measurement, row

    offset = (0.55, 0.1, -0.05)
    measurement, row = check(query(tmp_path / "q-night", city, offset, NIGHT))
    assert measurement.estimate["bank_entry"] == "night" and row.success
    assert abs(row.yaw_offset - 0.55) < 0.03
    assert f"lighting: night, bank entry night, gauge {first['gauge_id']}" in row.failure_log
    assert (row.lighting_regime, row.bank_entry, row.gauge_id) == ("night", "night", first["gauge_id"])

    elsewhere = load_scene(str(scenes_dir / "aframe_puydesancy.jpg"))
    measurement, row = check(query(tmp_path / "q-elsewhere", elsewhere, offset, NIGHT))
    assert measurement.estimate["expected_inconclusive"] and not row.success
    assert row.failure_log.startswith("expected at night (infrared)")


# ---------------------------------------------------------------------------- night captures


def _noise_grey_levels(image: np.ndarray) -> float:
    """The image's pixel noise: the robust spread of what a 2-px blur takes away."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float(np.median(np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 2.0)))) * 1.4826


def test_a_night_capture_keeps_the_mean_of_a_burst_of_snapshots_with_less_noise(scenes_dir, shared_broker, tmp_path):
    from calmon_core.capture_format import load_frame_image, read_capture
    from calmon_core.config import Fleet
    from calmon_core.extraction import CaptureExtractor
    from calmon_core.stacking import LOW_LIGHT_FRAMES
    from calmon_sim.fleet import SimFleet
    from resources.camera import CameraClient
    from resources.mqtt import MqttTelemetryLatch

    spec = night_fleet_spec(scenes_dir, (640, 360), patrol=False)
    fleet = SimFleet(spec, broker_host=shared_broker.host, broker_port=shared_broker.port).start()
    try:
        config = Fleet.model_validate(fleet.devices_config())
        extractor = CaptureExtractor(
            config,
            telemetry_factory=lambda dep, dev: MqttTelemetryLatch(
                dep.mqtt.host, dep.mqtt.port, dep.topic(dev.id), dep.telemetry_fields
            ),
            camera_factory=lambda dep, dev: CameraClient(dev.id, dev.camera),
            workdir=tmp_path,
        )
        result = extractor.extract_query("cam-n", stabilize_time=1, timeout=60)
        capture = read_capture(result.folder)
        assert capture.frames[0].model_extra["stacked_frames"] == LOW_LIGHT_FRAMES
        stacked = load_frame_image(result.folder, capture, 0)
        assert image_regime(stacked) == "night"  # the same infrared picture, only quieter
        single = CameraClient("cam-n", config.find("cam-n")[1].camera).grab()[0]
        assert stacked.shape == single.shape
        # the noise new in every snapshot falls by sqrt(8) = 2.8x
        assert _noise_grey_levels(stacked) < 0.6 * _noise_grey_levels(single)
    finally:
        fleet.stop()
