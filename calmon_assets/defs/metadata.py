"""Helpers the assets share: pictures in asset metadata, and local work folders."""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg

# Inline pictures of a partitioned asset: every materialization keeps its bytes in the event log
# for good, so they are previews; the full pictures are in the object store.
PREVIEW_WIDTH_PX = 480


def image_md(data: bytes, alt: str, mime: str = "image/jpeg") -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:{mime};base64,{base64.b64encode(data).decode()})")


def picture_metadata(
    name: str, data: bytes | None, uri: str | None, alt: str, pictures: str, mime: str = "image/jpeg"
) -> dict[str, dg.MetadataValue]:
    """`name`: an inline preview (pictures = "preview"); `name`_file: where the full one is stored."""
    metadata: dict[str, dg.MetadataValue] = {}
    if data and pictures == "preview":
        metadata[name] = image_md(data, alt, mime)
    if uri:
        metadata[f"{name}_file"] = dg.MetadataValue.path(uri)
    return metadata


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
