"""A reference scan's features in COLMAP's database schema (COLMAP 4 / pycolmap 4).

The schema is created by pycolmap when it is importable (so it is always the one pycolmap reads),
else from the statements below, which match pycolmap 4.2's. Rows are written with sqlite3:
one camera per frame with the lens the scan fitted (OPENCV: fx, fy, cx, cy, k1, k2, p1, p2; PINHOLE
when it has no distortion), one rig and frame per image (COLMAP 4 links images through frames),
keypoints as (x, y, scale, orientation) in COLMAP's pixel convention (the top-left pixel's centre
is at 0.5, 0.5) and SIFT descriptors as RootSIFT scaled to uint8 the way COLMAP stores its own.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np

PINHOLE = 1
OPENCV = 4  # fx, fy, cx, cy, k1, k2, p1, p2
SENSOR_CAMERA = 0
DESCRIPTOR_SIFT = 0
DESCRIPTOR_UNDEFINED = -1

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS rigs (rig_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "
    "ref_sensor_id INTEGER NOT NULL, ref_sensor_type INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS rig_ref_sensor_assignment ON rigs(ref_sensor_id, ref_sensor_type)",
    "CREATE TABLE IF NOT EXISTS rig_sensors (rig_id INTEGER NOT NULL, sensor_id INTEGER NOT NULL, "
    "sensor_type INTEGER NOT NULL, sensor_from_rig BLOB, "
    "FOREIGN KEY(rig_id) REFERENCES rigs(rig_id) ON DELETE CASCADE)",
    "CREATE UNIQUE INDEX IF NOT EXISTS rig_sensor_assignment ON rig_sensors(sensor_id, sensor_type)",
    "CREATE TABLE IF NOT EXISTS cameras (camera_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "
    "model INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, params BLOB, "
    "prior_focal_length INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS frames (frame_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "
    "rig_id INTEGER NOT NULL, FOREIGN KEY(rig_id) REFERENCES rigs(rig_id) ON DELETE CASCADE)",
    "CREATE TABLE IF NOT EXISTS frame_data (frame_id INTEGER NOT NULL, data_id INTEGER NOT NULL, "
    "sensor_id INTEGER NOT NULL, sensor_type INTEGER NOT NULL, "
    "FOREIGN KEY(frame_id) REFERENCES frames(frame_id) ON DELETE CASCADE)",
    "CREATE UNIQUE INDEX IF NOT EXISTS frame_sensor_assignment ON frame_data(data_id, sensor_type)",
    "CREATE TABLE IF NOT EXISTS images (image_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "
    "name TEXT NOT NULL UNIQUE, camera_id INTEGER NOT NULL, "
    "CONSTRAINT image_id_check CHECK(image_id >= 0 and image_id < 2147483647), "
    "FOREIGN KEY(camera_id) REFERENCES cameras(camera_id))",
    "CREATE UNIQUE INDEX IF NOT EXISTS index_name ON images(name)",
    "CREATE TABLE IF NOT EXISTS pose_priors (pose_prior_id INTEGER PRIMARY KEY NOT NULL, "
    "corr_data_id INTEGER NOT NULL, corr_sensor_id INTEGER NOT NULL, "
    "corr_sensor_type INTEGER NOT NULL, position BLOB, position_covariance BLOB, gravity BLOB, "
    "coordinate_system INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS pose_prior_data_assignment ON pose_priors(corr_data_id, "
    "corr_sensor_id, corr_sensor_type)",
    "CREATE TABLE IF NOT EXISTS keypoints (image_id INTEGER PRIMARY KEY NOT NULL, "
    "rows INTEGER NOT NULL, cols INTEGER NOT NULL, data BLOB, "
    "FOREIGN KEY(image_id) REFERENCES images(image_id) ON DELETE CASCADE)",
    "CREATE TABLE IF NOT EXISTS descriptors (image_id INTEGER PRIMARY KEY NOT NULL, "
    "type INTEGER NOT NULL, rows INTEGER NOT NULL, cols INTEGER NOT NULL, data BLOB, "
    "FOREIGN KEY(image_id) REFERENCES images(image_id) ON DELETE CASCADE)",
    "CREATE TABLE IF NOT EXISTS matches (pair_id INTEGER PRIMARY KEY NOT NULL, "
    "rows INTEGER NOT NULL, cols INTEGER NOT NULL, data BLOB)",
    "CREATE TABLE IF NOT EXISTS two_view_geometries (pair_id INTEGER PRIMARY KEY NOT NULL, "
    "rows INTEGER NOT NULL, cols INTEGER NOT NULL, data BLOB, config INTEGER NOT NULL, F BLOB, "
    "E BLOB, H BLOB, qvec BLOB, tvec BLOB, camera1 BLOB, camera2 BLOB)",
]


def _create_schema(path: Path, use_pycolmap: bool) -> None:
    if use_pycolmap:
        try:
            import pycolmap
        except ImportError:
            use_pycolmap = False
        else:
            pycolmap.Database.open(str(path)).close()
            return
    with sqlite3.connect(path) as con:
        for statement in SCHEMA:
            con.execute(statement)


def colmap_descriptors(raw: np.ndarray, detector: str) -> np.ndarray:
    """COLMAP's uint8 SIFT: RootSIFT (L1, sqrt) times 512, clipped; others stored as they are."""
    if detector != "sift":
        return raw.astype(np.uint8)
    d = raw.astype(np.float32)
    d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-7)
    return np.clip(np.round(512.0 * np.sqrt(d)), 0, 255).astype(np.uint8)


def write_database(path: str | Path, refmap, *, use_pycolmap: bool = True) -> Path:
    """(Re)write the COLMAP database for a ReferenceMap (features.py)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    _create_schema(tmp, use_pycolmap)
    con = sqlite3.connect(tmp)
    try:
        # pycolmap opens databases in WAL mode; fold the log back in so one file moves atomically
        con.execute("PRAGMA journal_mode=DELETE")
        _write_rows(con, refmap)
        con.commit()
    finally:
        con.close()
    tmp.replace(path)
    return path


def _write_rows(con: sqlite3.Connection, refmap) -> None:
    for frame, feats in zip(refmap.frames, refmap.features, strict=True):
        # the lens the reference scan fitted (COLMAP's pixel centres are at +0.5)
        lens = frame.lens
        params = [lens.fx, lens.fy, lens.cx + 0.5, lens.cy + 0.5]
        model = PINHOLE
        if not lens.is_pinhole:
            model, params = OPENCV, params + [lens.k1, lens.k2, lens.p1, lens.p2]
        cam = con.execute(
            "INSERT INTO cameras (model, width, height, params, prior_focal_length) VALUES (?, ?, ?, ?, 1)",
            (model, frame.width, frame.height, np.array(params, np.float64).tobytes()),
        ).lastrowid
        rig = con.execute(
            "INSERT INTO rigs (ref_sensor_id, ref_sensor_type) VALUES (?, ?)", (cam, SENSOR_CAMERA)
        ).lastrowid
        image = con.execute("INSERT INTO images (name, camera_id) VALUES (?, ?)", (frame.image, cam)).lastrowid
        frame_id = con.execute("INSERT INTO frames (rig_id) VALUES (?)", (rig,)).lastrowid
        con.execute(
            "INSERT INTO frame_data (frame_id, data_id, sensor_id, sensor_type) VALUES (?, ?, ?, ?)",
            (frame_id, image, cam, SENSOR_CAMERA),
        )
        kp = np.column_stack([feats.uv + 0.5, feats.scale, np.radians(feats.angle)]).astype(np.float32).reshape(-1, 4)
        con.execute("INSERT INTO keypoints VALUES (?, ?, ?, ?)", (image, kp.shape[0], 4, kp.tobytes()))
        desc = np.ascontiguousarray(colmap_descriptors(feats.descriptors, refmap.detector))
        dtype = DESCRIPTOR_SIFT if refmap.detector == "sift" else DESCRIPTOR_UNDEFINED
        con.execute(
            "INSERT INTO descriptors VALUES (?, ?, ?, ?, ?)",
            (image, dtype, desc.shape[0], desc.shape[1] if desc.ndim == 2 else 0, desc.tobytes()),
        )
