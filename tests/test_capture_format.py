import json
from datetime import UTC, datetime

import numpy as np
import pytest

from calmon_core.capture_format import (
    CaptureFormatError,
    load_frame_image,
    parse_manifest,
    read_capture,
    write_capture,
)
from calmon_core.layout import (
    UnsafeNameError,
    format_timestamp,
    query_scan_prefix,
    reference_scan_prefix,
)
from calmon_core.models import Capture, CaptureKind, CaptureMode, Frame, Pose


def sample_manifest() -> dict:
    return {
        "format": "calmon.capture/1",
        "kind": "query",
        "deployment_name": "harbor-east",
        "device_id": "cam-07",
        "mode": "passive",
        "started_at": "2026-11-24T13:00:00Z",
        "frames": [
            {
                "image": "images/000.jpg",
                "captured_at": "2026-11-24T13:00:04.120Z",
                "width": 64,
                "height": 48,
                "hfov_deg": 60.0,
                "telemetry": {"yaw": 120.0, "pitch": -5.0, "roll": 0.0, "zoom": 1.0},
                "exposure_ms": 8,
            }
        ],
        "site_note": "kept",
    }


def test_round_trip(tmp_path):
    image = (np.arange(64 * 48 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    capture = parse_manifest(sample_manifest())
    write_capture(tmp_path, capture, {"images/000.jpg": image})
    again = read_capture(tmp_path)
    assert again == capture
    assert again.frames[0].telemetry == Pose(yaw=120, pitch=-5, roll=0, zoom=1)
    assert again.model_extra["site_note"] == "kept"  # unknown keys are kept
    assert again.frames[0].model_extra["exposure_ms"] == 8
    assert load_frame_image(tmp_path, again, 0).shape == (48, 64, 3)
    assert again.frames[0].intrinsics().matrix()[0, 2] == 31.5


def test_models_build_a_manifest_in_code(tmp_path):
    capture = Capture(
        kind=CaptureKind.reference,
        deployment_name="d",
        device_id="c",
        mode=CaptureMode.reference,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        frames=[
            Frame(
                image="images/a.jpg",
                captured_at=datetime(2026, 1, 1, tzinfo=UTC),
                width=8,
                height=8,
                fx=10,
                fy=10,
                cx=3.5,
                cy=3.5,
                telemetry=Pose(yaw=1, pitch=2),
            )
        ],
    )
    write_capture(tmp_path, capture, {"images/a.jpg": np.zeros((8, 8, 3), np.uint8)})
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["format"] == "calmon.capture/1"
    assert on_disk["started_at"].endswith("Z")
    assert read_capture(tmp_path) == capture


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.pop("device_id"), "device_id: Field required"),
        (lambda m: m["frames"][0]["telemetry"].pop("yaw"), "frames[0].telemetry.yaw"),
        (lambda m: m["frames"][0].update(image="../escape.jpg"), "frames[0].image"),
        (lambda m: m["frames"][0].update(image="/etc/passwd"), "leaves the scan folder"),
        (lambda m: m.update(format="calmon.capture/9"), "unsupported format"),
        (lambda m: m.update(device_id="cam/07"), "not a safe path segment"),
        (lambda m: m["frames"][0].pop("hfov_deg"), "hfov_deg or fx"),
    ],
)
def test_bad_manifests_name_the_key(mutate, message):
    manifest = sample_manifest()
    mutate(manifest)
    with pytest.raises(CaptureFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_manifest(manifest, "somewhere/manifest.json")


def test_non_finite_number_names_the_key(tmp_path):
    text = json.dumps(sample_manifest()).replace('"pitch": -5.0', '"pitch": NaN')
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(CaptureFormatError, match=r"manifest.json: frames\[0\]\.telemetry\.pitch: non-finite"):
        read_capture(tmp_path)


def test_not_json_and_missing_manifest(tmp_path):
    with pytest.raises(CaptureFormatError, match="no manifest.json"):
        read_capture(tmp_path)
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(CaptureFormatError, match="not valid JSON"):
        read_capture(tmp_path)


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    capture = parse_manifest(sample_manifest())
    write_capture(tmp_path, capture)
    with pytest.raises(CaptureFormatError, match=r"000.jpg' is missing"):
        load_frame_image(tmp_path, capture, 0)
    good = write_capture(tmp_path, capture, {"images/000.jpg": np.full((48, 64, 3), 90, np.uint8)})
    data = (good / "images/000.jpg").read_bytes()
    (good / "images/000.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(CaptureFormatError, match="000.jpg"):
        load_frame_image(tmp_path, capture, 0)
    (good / "images/000.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(CaptureFormatError, match="cannot decode"):
        load_frame_image(tmp_path, capture, 0)


def test_key_layout():
    assert reference_scan_prefix("harbor-east", "cam-07") == "harbor-east/cam-07/reference_scan"
    stamp = format_timestamp(datetime(2026, 11, 24, 13, 0, 0, tzinfo=UTC))
    assert stamp == "20261124T130000Z"
    assert query_scan_prefix("harbor-east", "cam-07", stamp) == "harbor-east/cam-07/query_scan/20261124T130000Z"
    for bad in ("..", "a/b", "", "x..y"):
        with pytest.raises(UnsafeNameError):
            reference_scan_prefix(bad, "cam")
    with pytest.raises(ValueError):
        query_scan_prefix("d", "c", "2026-11-24")
