"""Read, write and validate scans in calmon.capture/1 (shared/docs/capture-format.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import ValidationError

from calmon_core.models import Capture, json_default

MANIFEST = "manifest.json"


class CaptureFormatError(ValueError):
    """A manifest or image that does not follow calmon.capture/1; the message names the key."""


def _first_non_finite(obj: Any, path: str = "") -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return path or "<root>"
    if isinstance(obj, dict):
        for key, value in obj.items():
            found = _first_non_finite(value, f"{path}.{key}" if path else str(key))
            if found:
                return found
    if isinstance(obj, list):
        for i, value in enumerate(obj):
            found = _first_non_finite(value, f"{path}[{i}]")
            if found:
                return found
    return None


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = ""
        for part in item["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        lines.append(f"{loc or '<root>'}: {item['msg']}")
    return "; ".join(lines)


def parse_manifest(data: bytes | str | dict, source: str = MANIFEST) -> Capture:
    """Validate a manifest; errors name the source and the key path."""
    if isinstance(data, (bytes, str)):
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CaptureFormatError(f"{source}: not valid JSON ({exc})") from exc
    else:
        obj = data
    if not isinstance(obj, dict):
        raise CaptureFormatError(f"{source}: a manifest must be a JSON object")
    bad = _first_non_finite(obj)
    if bad:
        raise CaptureFormatError(f"{source}: {bad}: non-finite number")
    try:
        return Capture.model_validate(obj)
    except ValidationError as exc:
        raise CaptureFormatError(f"{source}: {_describe(exc)}") from exc


def manifest_bytes(capture: Capture) -> bytes:
    return json.dumps(capture.model_dump(mode="json"), indent=2, default=json_default, allow_nan=False).encode()


def resolve_image(folder: Path, relative: str) -> Path:
    """The image's path, refusing any path that leaves the scan folder."""
    root = folder.resolve()
    path = (root / relative).resolve()
    if root != path and root not in path.parents:
        raise CaptureFormatError(f"{folder / MANIFEST}: image {relative!r} leaves the scan folder")
    return path


def read_capture(folder: str | Path) -> Capture:
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise CaptureFormatError(f"{manifest}: no manifest.json in {folder}")
    capture = parse_manifest(manifest.read_bytes(), str(manifest))
    for frame in capture.frames:
        resolve_image(folder, frame.image)
    return capture


# A PTZ camera's frame is at most a few tens of megapixels (8K is 33 MP); a header declaring more
# is a decompression bomb (a 1 MB PNG can declare 20000x20000, 1.2 GB decoded).
MAX_IMAGE_PIXELS = 40_000_000
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) a PNG or JPEG declares in its header, without decoding it; None if neither."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before them
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _JPEG_SOF and i + 9 <= len(data):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + length
    return None


def decode_image(
    data: bytes,
    source: str,
    expected: tuple[int, int] | None = None,
    grayscale: bool = False,
    at_most: tuple[int, int] | None = None,
    reduced: int = 1,
) -> np.ndarray:
    """Decode JPEG/PNG bytes to BGR (or grey); a corrupt, truncated, oversized or other-sized image is an
    error naming it. The size is read from the header and checked before decoding allocates.
    reduced (2, 4 or 8): decoded at that fraction of the size (a JPEG's DCT scaled: far cheaper)."""
    if not data:
        raise CaptureFormatError(f"{source}: empty image")
    size = image_size(data)
    if size is None:
        raise CaptureFormatError(f"{source}: cannot decode image (not a JPEG or PNG, or no size in its header)")
    width, height = size
    if expected is not None and (width, height) != tuple(expected):
        raise CaptureFormatError(
            f"{source}: declares {width}x{height} pixels, but {expected[0]}x{expected[1]} was expected "
            "(manifest or intrinsics); not decoded"
        )
    if at_most is not None and (width > at_most[0] or height > at_most[1]):
        raise CaptureFormatError(
            f"{source}: declares {width}x{height} pixels, more than the {at_most[0]}x{at_most[1]} allowed "
            "for this camera (from its intrinsics); not decoded"
        )
    if width * height > MAX_IMAGE_PIXELS or width == 0 or height == 0:
        raise CaptureFormatError(
            f"{source}: declares {width}x{height} pixels; a frame may have 1 to {MAX_IMAGE_PIXELS:,} (not decoded)"
        )
    array = np.frombuffer(data, dtype=np.uint8)
    if reduced == 1:
        flag = cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    else:
        flag = _REDUCED_FLAGS[(reduced, grayscale)]
    image = cv2.imdecode(array, flag)
    if image is None:
        raise CaptureFormatError(f"{source}: cannot decode image (corrupt or not JPEG/PNG)")
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise CaptureFormatError(f"{source}: truncated JPEG (no end-of-image marker)")
    return image


_REDUCED_FLAGS = {
    (2, False): cv2.IMREAD_REDUCED_COLOR_2,
    (4, False): cv2.IMREAD_REDUCED_COLOR_4,
    (8, False): cv2.IMREAD_REDUCED_COLOR_8,
    (2, True): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (4, True): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    (8, True): cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def load_frame_image(folder: str | Path, capture: Capture, index: int, reduced: int = 1) -> np.ndarray:
    """Frame `index` of a capture, checked against its manifest size (reduced: see decode_image)."""
    folder = Path(folder)
    frame = capture.frames[index]
    path = resolve_image(folder, frame.image)
    if not path.is_file():
        raise CaptureFormatError(f"{folder / MANIFEST}: frames[{index}].image {frame.image!r} is missing")
    return decode_image(path.read_bytes(), str(path), expected=(frame.width, frame.height), reduced=reduced)


def encode_jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise CaptureFormatError("cannot encode JPEG")
    return buffer.tobytes()


def write_capture(folder: str | Path, capture: Capture, images: dict[str, bytes | np.ndarray] | None = None) -> Path:
    """Write the manifest and any given images (name -> JPEG bytes or BGR array) to a folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in (images or {}).items():
        path = resolve_image(folder, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content if isinstance(content, bytes) else encode_jpeg(content)
        path.write_bytes(data)
    (folder / MANIFEST).write_bytes(manifest_bytes(capture))
    return folder
