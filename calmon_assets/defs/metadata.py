"""Helpers the assets share: pictures in asset metadata, and local work folders."""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg


def image_md(data: bytes, alt: str, mime: str = "image/jpeg") -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:{mime};base64,{base64.b64encode(data).decode()})")


def workdir(root: str, *parts: str) -> Path:
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
