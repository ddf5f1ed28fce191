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


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Decode JPEG/PNG bytes to BGR; a corrupt or truncated image is an error naming it."""
    if not data:
        raise CaptureFormatError(f"{source}: empty image")
    array = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(array, cv2.IMREAD_COLOR)
    if image is None:
        raise CaptureFormatError(f"{source}: cannot decode image (corrupt or not JPEG/PNG)")
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise CaptureFormatError(f"{source}: truncated JPEG (no end-of-image marker)")
    return image


def load_frame_image(folder: str | Path, capture: Capture, index: int) -> np.ndarray:
    folder = Path(folder)
    frame = capture.frames[index]
    path = resolve_image(folder, frame.image)
    if not path.is_file():
        raise CaptureFormatError(f"{folder / MANIFEST}: frames[{index}].image {frame.image!r} is missing")
    return decode_image(path.read_bytes(), str(path))


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
