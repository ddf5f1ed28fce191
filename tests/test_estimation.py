"""Offset estimation on rendered real-scene cases with known truth (fixed seeds, small images)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calmon_core.capture_format import CaptureFormatError, read_capture, write_capture
from calmon_core.estimation import (
    ALGORITHM_VERSION,
    FrameEstimate,
    combine_frames,
    estimate_offsets,
)
from calmon_core.features import FEATURES_DIR, has_reference_features
from calmon_sim.cases import QueryView, write_query, write_reference
from calmon_sim.scene import load_scene

REPO = Path(__file__).resolve().parent.parent
AXES = ("yaw", "pitch", "roll")
YAWS, PITCHES = [-30.0, 10.0, 50.0], [-8.0, 14.0]
W, H = 640, 360  # half size keeps the tests fast; full-size accuracy is benchmarks/accuracy.py
TOL_DEG = 0.01  # twice the 1280-wide p95 target, for pixels twice as large


@pytest.fixture(scope="module")
def city(scenes_dir):
    return load_scene(str(scenes_dir / "equirec2perspec_image.jpg"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, city):
    folder = tmp_path_factory.mktemp("estimation") / "reference"
    write_reference(folder, city, YAWS, PITCHES, width=W, height=H, rng=np.random.default_rng(7))
    return folder


def _errors(estimate, offset):
    return np.array([estimate.offsets_deg[a] - o for a, o in zip(AXES, offset, strict=True)])


def test_active_capture_recovers_the_offset_and_builds_features(reference, city, tmp_path):
    offset = (0.62, -0.31, 0.12)
    views = [
        QueryView((5.0, 0.0, 0.0), offset, 45.0),
        QueryView((30.0, 5.0, 0.0), offset, 25.0),
        QueryView((-15.0, 8.0, 0.0), offset, 60.0),
    ]
    query = write_query(tmp_path / "query", city, views, width=W, height=H, level=1, rng=np.random.default_rng(11))
    estimate = estimate_offsets(reference, query, diagnostics_dir=tmp_path / "diag")
    assert has_reference_features(reference)  # built on the fly
    assert estimate.success, estimate.failure_log
    assert np.all(np.abs(_errors(estimate, offset)) < TOL_DEG)
    assert estimate.breach is True
    assert estimate.frames_used == 3
    for frame, view in zip(estimate.frames, views, strict=True):
        assert frame.success and frame.inliers >= 30
        assert np.all(np.abs(_errors(frame, view.offset)) < TOL_DEG)
        assert all(0 < frame.uncertainty_deg[a] < 0.05 for a in AXES)
        assert Path(frame.diagnostic_picture).is_file()
        assert Path(frame.diagnostic_picture).read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    doc = estimate.to_json_dict()
    assert set(doc) >= {"success", "offsets_deg", "uncertainty_deg", "breach", "frames", "failure_log"}
    assert doc["algorithm_version"] == ALGORITHM_VERSION
    assert doc["frames"][0]["image"] == "images/000.jpg"
    json.dumps(doc)  # plain JSON types only


def test_small_offset_is_not_a_breach_and_clean_zero_is_zero(reference, city, tmp_path):
    views = [QueryView((-10.0, -4.0, 0.0), (0.0, 0.0, 0.0), 50.0), QueryView((20.0, 2.0, 0.0), (0.0, 0.0, 0.0), 30.0)]
    query = write_query(tmp_path / "query", city, views, width=W, height=H, level=0)
    estimate = estimate_offsets(reference, query, threshold_deg=0.5)
    assert estimate.success and estimate.breach is False
    assert np.all(np.abs(_errors(estimate, (0.0, 0.0, 0.0))) < TOL_DEG / 2)


def test_blank_and_sky_views_are_inconclusive(reference, tmp_path, scenes_dir):
    nature = load_scene(str(scenes_dir / "pannellum_examplepano.jpg"))
    sky = write_query(
        tmp_path / "sky", nature, [QueryView((10.0, 75.0, 0.0), (0.3, 0.0, 0.0), 30.0)], width=W, height=H
    )
    estimate = estimate_offsets(reference, sky)
    assert not estimate.success and estimate.breach is None and estimate.offsets_deg is None
    assert estimate.failure_log
    # a uniformly grey frame in the reference's own capture geometry
    capture = read_capture(sky)
    grey = np.full((H, W, 3), 128, np.uint8)
    write_capture(tmp_path / "blank", capture, {capture.frames[0].image: grey})
    blank = estimate_offsets(reference, tmp_path / "blank")
    assert not blank.success
    assert "blank" in blank.frames[0].failure_log


def test_corrupt_jpeg_names_the_file(reference, city, tmp_path):
    query = write_query(tmp_path / "query", city, [QueryView((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 60)], width=W, height=H)
    image = query / "images" / "000.jpg"
    image.write_bytes(image.read_bytes()[:2000])
    with pytest.raises(CaptureFormatError, match="000.jpg"):
        estimate_offsets(reference, query)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "calmon_cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_cli_exit_codes(reference, city, tmp_path):
    good = write_query(tmp_path / "good", city, [QueryView((12.0, 3.0, 0.0), (0.2, 0.1, 0.0), 40)], width=W, height=H)
    done = _cli("estimate", str(reference), str(good))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["success"] is True and doc["breach"] is False
    assert abs(doc["offsets_deg"]["yaw"] - 0.2) < TOL_DEG

    capture = read_capture(good)
    write_capture(tmp_path / "blank", capture, {capture.frames[0].image: np.zeros((H, W, 3), np.uint8)})
    blank = _cli("estimate", str(reference), str(tmp_path / "blank"))
    assert blank.returncode == 1
    assert json.loads(blank.stdout)["success"] is False

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    bad = _cli("estimate", str(reference), str(tmp_path / "bad"))
    assert bad.returncode == 2
    assert "manifest.json" in bad.stderr


def test_cli_extract_features_rebuilds(reference):
    done = _cli("extract-features", str(reference))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["frames"] == len(YAWS) * len(PITCHES)
    assert summary["keypoints"] > 1000
    assert (reference / FEATURES_DIR / "database.db").is_file()


def test_reference_map_absorbs_one_frames_telemetry_error(city, tmp_path):
    """One reference frame reported 0.3 deg yaw / -0.2 deg pitch off: the rotation-only bundle
    adjustment must put it back, so a query that mostly sees that frame stays right."""
    reference = write_reference(tmp_path / "reference", city, YAWS, PITCHES, width=W, height=H)
    manifest = json.loads((reference / "manifest.json").read_text())
    manifest["frames"][1]["telemetry"]["yaw"] += 0.3
    manifest["frames"][1]["telemetry"]["pitch"] -= 0.2
    (reference / "manifest.json").write_text(json.dumps(manifest))
    offset = (0.2, 0.1, 0.0)
    query = write_query(tmp_path / "query", city, [QueryView((10.0, -6.0, 0.0), offset, 30.0)], width=W, height=H)
    estimate = estimate_offsets(reference, query)
    assert estimate.success
    assert np.all(np.abs(_errors(estimate, offset)[:2]) < TOL_DEG)  # yaw, pitch
    assert abs(_errors(estimate, offset)[2]) < 3 * estimate.uncertainty_deg["roll"] + 0.005


def test_changed_scene_and_tiny_textured_patch_are_inconclusive(reference, city, tmp_path, scenes_dir):
    elsewhere = load_scene(str(scenes_dir / "aframe_puydesancy.jpg"))
    other = write_query(
        tmp_path / "other", elsewhere, [QueryView((10.0, 0.0, 0.0), (0.0, 0.0, 0.0), 45.0)], width=W, height=H
    )
    assert not estimate_offsets(reference, other).success
    # all matches crowded in a small patch: degenerate geometry, not a confident number
    query = write_query(
        tmp_path / "patch", city, [QueryView((10.0, 0.0, 0.0), (0.3, 0.0, 0.0), 45.0)], width=W, height=H
    )
    capture = read_capture(query)
    image = np.full((H, W, 3), 120, np.uint8)
    view = city.render(10.3, 0.0, 0.0, 45.0, W, H)
    image[140:210, 280:390] = view[140:210, 280:390]  # 110 x 70 px of texture
    write_capture(tmp_path / "patch", capture, {capture.frames[0].image: image})
    patch = estimate_offsets(reference, tmp_path / "patch")
    assert not patch.success
    assert "degenerate" in patch.frames[0].failure_log


def _frame(name, yaw, sigma=0.001, success=True):
    offsets = {"yaw": yaw, "pitch": 0.1, "roll": 0.0}
    return FrameEstimate(
        name,
        success,
        100,
        offsets if success else None,
        {a: sigma for a in AXES} if success else None,
        {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "zoom": 1.0},
        None,
        None if success else "dark",
    )


def test_combination_rejects_an_outlier_frame():
    frame = _frame
    frames = [frame("a", 0.600), frame("b", 0.602), frame("c", 0.604), frame("d", 1.4), frame("e", 0.0, success=False)]
    offsets, sigma, used, note = combine_frames(frames)
    assert [f.image for f in used] == ["a", "b", "c"]
    assert offsets["yaw"] == pytest.approx(0.602, abs=1e-6)
    assert offsets["pitch"] == pytest.approx(0.1, abs=1e-9)
    assert 0 < sigma["yaw"] < 0.005
    assert "d" in note


def test_a_registered_references_error_is_in_the_sigma_and_does_not_average_away():
    """Four frames against one registered scan share its registration error (0.003 deg): the
    combined sigma keeps all of it, each frame's own sigma carries it too."""
    gauge = {"yaw": 0.003, "pitch": 0.0, "roll": 0.0}
    frames = [_frame(n, 0.6, sigma=0.001) for n in "abcd"]
    _, plain, _, _ = combine_frames([_frame(n, 0.6, sigma=0.001) for n in "abcd"])
    _, sigma, used, _ = combine_frames(frames, [gauge] * 4)
    assert plain["yaw"] == pytest.approx(0.0005, abs=1e-6)
    assert sigma["yaw"] == pytest.approx((0.0005**2 + 0.003**2) ** 0.5, abs=1e-6)
    assert sigma["pitch"] == pytest.approx(plain["pitch"], abs=1e-9)
    assert all(f.uncertainty_deg["yaw"] == pytest.approx((0.001**2 + 0.003**2) ** 0.5, abs=1e-6) for f in used)


def test_focal_length_a_few_percent_off_is_fitted(reference, city, tmp_path):
    """A zoom's focal length 3% off in the manifest: fitted, not turned into tenths of a degree."""
    offset = (-0.4, 0.25, 0.05)
    query = write_query(tmp_path / "query", city, [QueryView((0.0, 2.0, 0.0), offset, 35.0)], width=W, height=H)
    manifest = json.loads((query / "manifest.json").read_text())
    frame = manifest["frames"][0]
    half = np.radians(frame["hfov_deg"] / 2)
    frame["hfov_deg"] = float(np.degrees(2 * np.arctan(np.tan(half) * 1.03)))
    (query / "manifest.json").write_text(json.dumps(manifest))
    estimate = estimate_offsets(reference, query)
    assert estimate.success
    assert np.all(np.abs(_errors(estimate, offset)) < TOL_DEG)
    assert estimate.frames[0].focal_scale == pytest.approx(1.03, rel=2e-3)  # wider hfov = shorter focal


def test_cli_reads_s3_prefixes(reference, city, tmp_path, s3_bucket):
    """`calmon estimate s3://... s3://...` against moto's S3 server over HTTP."""
    import os

    from resources.object_store import S3ObjectStore

    endpoint, bucket = s3_bucket
    store = S3ObjectStore(bucket, endpoint_url=endpoint)
    store.upload_folder(reference, "harbor/cam-01/reference_scan")
    query = write_query(tmp_path / "query", city, [QueryView((30.0, 0.0, 0.0), (0.7, 0.0, 0.0), 40)], width=W, height=H)
    store.upload_folder(query, "harbor/cam-01/query_scan/20261125T080000Z")
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "calmon_cli",
            "estimate",
            f"s3://{bucket}/harbor/cam-01/reference_scan",
            f"s3://{bucket}/harbor/cam-01/query_scan/20261125T080000Z",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["breach"] is True
    assert abs(doc["offsets_deg"]["yaw"] - 0.7) < TOL_DEG
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "calmon_cli",
            "estimate",
            f"s3://{bucket}/harbor/cam-01/reference_scan",
            f"s3://{bucket}/nothing/here",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert missing.returncode == 2
    assert "nothing/here" in missing.stderr
