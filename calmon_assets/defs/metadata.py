"""Helpers the assets share: pictures in asset metadata, and local work folders."""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg


def image_md(data: bytes, alt: str, mime: str = "image/jpeg") -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:{mime};base64,{base64.b64encode(data).decode()})")


def reading(value: float | None, unit: str, digits: int = 3, signed: bool = False) -> dg.MetadataValue:
    """A measured number as text ("+0.801°", "n/a"): the metadata of a partitioned asset, which
    Dagster's built-in plots would otherwise join across partitions into one meaningless line."""
    if value is None:
        return dg.MetadataValue.text("n/a")
    return dg.MetadataValue.text(f"{value:{'+' if signed else ''}.{digits}f}{unit}")


def workdir(root: str, *parts: str) -> Path:
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
