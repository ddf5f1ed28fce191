"""Image sizes are checked from the header before any decoding: no decompression bomb, no traceback."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest

from calmon_core.capture_format import (
    MAX_IMAGE_PIXELS,
    CaptureFormatError,
    decode_image,
    image_size,
    load_frame_image,
    write_capture,
)
from calmon_core.config import CameraEndpoint
from calmon_core.models import Capture, Frame, Pose
from resources.camera import CameraClient, CameraError


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height and carries one small compressed row (a bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * min(width, 4096)), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_header(width: int, height: int) -> bytes:
    """A baseline JPEG whose SOF0 declares width x height (after an APP0 segment), then EOI."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def real_jpeg(width: int, height: int) -> bytes:
    return cv2.imencode(".jpg", np.full((height, width, 3), 127, np.uint8))[1].tobytes()


def test_image_size_reads_png_and_jpeg_headers():
    assert image_size(png_header(20000, 20000)) == (20000, 20000)
    assert image_size(jpeg_header(65000, 65000)) == (65000, 65000)
    assert image_size(real_jpeg(64, 48)) == (64, 48)
    assert image_size(cv2.imencode(".png", np.zeros((5, 7, 3), np.uint8))[1].tobytes()) == (7, 5)
    assert image_size(b"GIF89a....") is None


@pytest.mark.parametrize("make", [png_header, jpeg_header])
@pytest.mark.parametrize("side", [20000, 65000])
def test_a_huge_declared_image_is_refused_before_decoding(make, side):
    with pytest.raises(CaptureFormatError) as info:
        decode_image(make(side, side), "cam-7 snapshot")
    text = str(info.value)
    assert "cam-7 snapshot" in text and f"{side}x{side}" in text and f"{MAX_IMAGE_PIXELS:,}" in text


def test_an_image_of_another_size_than_expected_is_refused():
    with pytest.raises(CaptureFormatError) as info:
        decode_image(real_jpeg(128, 96), "frame_000.jpg", expected=(640, 360))
    assert "128x96" in str(info.value) and "640x360" in str(info.value)
    assert decode_image(real_jpeg(64, 48), "ok.jpg", expected=(64, 48)).shape == (48, 64, 3)


def test_a_capture_frame_must_match_its_manifest_size(tmp_path):
    frame = Frame(
        image="frame_000.jpg",
        captured_at=datetime(2026, 11, 1, tzinfo=UTC),
        width=640,
        height=360,
        hfov_deg=60,
        telemetry=Pose(yaw=0, pitch=0, roll=0, zoom=1),
    )
    capture = Capture(
        device_id="cam-1",
        deployment_name="d",
        kind="query",
        mode="passive",
        started_at=frame.captured_at,
        frames=[frame],
    )
    write_capture(tmp_path, capture, {"frame_000.jpg": png_header(20000, 20000)})
    with pytest.raises(CaptureFormatError) as info:
        load_frame_image(tmp_path, capture, 0)
    assert "frame_000.jpg" in str(info.value) and "20000x20000" in str(info.value) and "640x360" in str(info.value)


def test_a_camera_snapshot_bomb_is_a_camera_error_not_an_allocation(httpserver):
    httpserver.expect_request("/snapshot.jpg").respond_with_data(jpeg_header(20000, 20000), content_type="image/jpeg")
    client = CameraClient("cam-b", CameraEndpoint(base_url=httpserver.url_for("/"), ptz="none"))
    with pytest.raises(CameraError) as info:
        client.grab()
    assert "cam-b" in str(info.value) and "20000x20000" in str(info.value)


def test_a_camera_snapshot_larger_than_its_intrinsics_allow_is_refused(httpserver):
    httpserver.expect_request("/snapshot.jpg").respond_with_data(real_jpeg(1600, 900), content_type="image/jpeg")
    endpoint = CameraEndpoint(base_url=httpserver.url_for("/"), ptz="none")
    with pytest.raises(CameraError) as info:
        CameraClient("cam-s", endpoint, max_image_size=(1280, 720)).grab()
    assert "1600x900" in str(info.value) and "1280x720" in str(info.value)
    image, _ = CameraClient("cam-s", endpoint, max_image_size=(3200, 1800)).grab()
    assert image.shape == (900, 1600, 3)
