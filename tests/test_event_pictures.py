"""What a check's materialization keeps in Dagster's event log: previews (or only links) of its
pictures, the full ones in the object store ([ui] pictures)."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from calmon_assets.defs.checks.asset_checks import result_metadata
from calmon_assets.defs.checks.measure import Measurement
from calmon_assets.defs.metadata import PREVIEW_WIDTH_PX
from calmon_core.config import ConfigError, load_settings
from calmon_core.models import CalibrationResult, CheckStatus

FILES = "s3://camera-calibration-monitoring/harbor/cam-ok/query_scan/20261202T070000Z"


def _rows(n: int) -> list[CalibrationResult]:
    start = datetime(2026, 11, 30, tzinfo=UTC)
    return [
        CalibrationResult(
            deployment_name="harbor",
            device_id="cam-ok",
            timestamp=start + timedelta(hours=h),
            check_partition=(start + timedelta(hours=h)).strftime("%Y-%m-%d-%H:%M"),
            yaw_offset=0.01 * h,
            pitch_offset=0.0,
            roll_offset=0.0,
            yaw_uncertainty=0.002,
            pitch_uncertainty=0.002,
            roll_uncertainty=0.002,
            success=True,
            status=CheckStatus.ok,
            files_location=FILES,
        )
        for h in range(n)
    ]


def _metadata(pictures: str) -> tuple[dict, list[str]]:
    rng = np.random.default_rng(1)
    picture = cv2.imencode(".jpg", rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8))[1].tobytes()
    stored: list[str] = []

    def store(data: bytes, name: str) -> str:
        stored.append(name)
        return f"{FILES}/diagnostics/{name}"

    *history, row = _rows(12)
    measurement = Measurement(diagnostic_picture=picture, diagnostic_uri=f"{FILES}/diagnostics/000_000.jpg")
    return result_metadata(row, measurement, history, logging.getLogger("t"), pictures, store), stored


def test_preview_pictures_are_small_and_link_the_full_ones():
    metadata, stored = _metadata("preview")
    diagnostic = metadata["diagnostic"].value
    assert diagnostic.startswith("![matches and view outlines](data:image/jpeg;base64,")
    preview = cv2.imdecode(np.frombuffer(base64.b64decode(diagnostic.split(",", 1)[1][:-1]), np.uint8), 1)
    assert preview.shape[1] == PREVIEW_WIDTH_PX
    assert metadata["trend"].value.startswith("![offset trend](data:image/png;base64,")
    assert metadata["diagnostic_file"].value == f"{FILES}/diagnostics/000_000.jpg"
    assert metadata["trend_file"].value == f"{FILES}/diagnostics/trend.png" and stored == ["trend.png"]


def test_links_keep_no_picture_in_the_event_log():
    metadata, stored = _metadata("links")
    assert not any("data:image" in str(getattr(v, "value", v)) for v in metadata.values())
    assert {"diagnostic_file", "trend_file"} <= set(metadata) and stored == ["trend.png"]


def test_an_unknown_pictures_setting_names_the_key(tmp_path):
    ini = tmp_path / "calmon.ini"
    ini.write_text("[ui]\npictures = thumbnails\n")
    with pytest.raises(ConfigError) as err:
        load_settings(ini)
    assert "pictures" in str(err.value) and str(ini) in str(err.value)
