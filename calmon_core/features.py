"""Stage 1: keypoints and descriptors, and the reference scan's feature map under features/.

Default detector: SIFT (OpenCV), descriptors RootSIFT-normalised (L1, square root) for matching.
A reference's features/ holds the COLMAP database (colmap_db.py) and calmon's own index
(`calmon_index.npz`: per keypoint the pixel, scale, orientation, raw descriptor and frame; per frame
the intrinsics, the reported pose and the rotation refined by reference_map.py; in the json the lens
per zoom that reference_map.py calibrated from the scan's overlaps, calmon_core.lens).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from calmon_core import photometry
from calmon_core.capture_format import MANIFEST, CaptureFormatError, decode_image, load_frame_image, read_capture
from calmon_core.conventions import rotation_from_ypr, ypr_from_rotation
from calmon_core.gauge import apply_gauge
from calmon_core.lens import Lens, LensAtFrame, LensCalibration, uncalibrated
from calmon_core.models import Capture

FEATURES_DIR = "features"
INDEX_FILE = "calmon_index.npz"
INDEX_META = "calmon_index.json"
COLMAP_DB = "database.db"
MATCH_INDEX_FILE = "match_index_{:04d}.flann"  # frame i's saved KD-trees (matching.DescriptorIndex)
FEATURES_VERSION = "calmon-features/4"  # + the photometric preprocessing, see features_version()

# keypoint caps: enough for sub-0.001 deg fits, few enough to match in well under 0.5 s. A query's
# strongest 2500 fit as well as its strongest 4000 (benchmarks/accuracy.py, typical lens: p95 0.0039
# against 0.0059 deg) for 20 % less CPU per frame: descriptors and the search scale with the count.
REFERENCE_NFEATURES = 8000
QUERY_NFEATURES = 2500
# Keypoints are detected on a pyramid level no wider than this, then scaled back to full-resolution
# pixels (the lens and the intrinsics are the frame's): SIFT's cost grows with the pixels (its first
# octave is the image upscaled 2x), while the precision comes from the photometric refinement at full
# resolution (estimation.photometric_correspondences). Frames this wide or narrower are detected as
# they are.
DETECT_MAX_WIDTH = 1280
# The level a query's keypoints are detected on. A coarser one than the reference's would still
# match (a query is at the reference's zoom or narrower, its keypoints find their scale in the
# reference's finer octaves) and skip SIFT's costliest octave: at 640 px a query frame costs 25-35 %
# less CPU, but roll p95 grows by 20-35 % on degraded frames (benchmarks/results/accuracy_query_level.txt),
# where the feature fit itself is the answer more often.
QUERY_DETECT_MAX_WIDTH = 1280


def detection_scale(width: int, max_width: int | None = None) -> float:
    """Full-resolution pixels per pixel of the level features are detected on (1.0: full size)."""
    return max(1.0, width / (max_width or DETECT_MAX_WIDTH))


def detection_level(gray: np.ndarray, max_width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The grey image at the detection level (area-averaged) and its (x, y) scale: full-resolution
    pixels per level pixel along each axis (the rounded level size may not keep the aspect exactly)."""
    h, w = gray.shape[:2]
    scale = detection_scale(w, max_width)
    if scale == 1.0:
        return gray, np.ones(2)
    size = (round(w / scale), round(h / scale))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), np.array([w / size[0], h / size[1]])


def to_full_resolution(uv: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Pixels of a level (detection_level's scale) back to full resolution (pixel-centre convention)."""
    return uv if np.all(scale == 1.0) else (uv + 0.5) * scale - 0.5


@dataclass
class FeatureSet:
    """Keypoints of one image: pixel (u, v) with OpenCV's pixel-centre convention, scale, angle."""

    uv: np.ndarray  # (N, 2) float64
    scale: np.ndarray  # (N,)
    angle: np.ndarray  # (N,) degrees
    descriptors: np.ndarray  # (N, D) raw detector output (uint8 for SIFT)

    def __len__(self) -> int:
        return len(self.uv)


def _detector(name: str, nfeatures: int):
    name = name.lower()
    if name == "sift":
        # enable_precise_upscale: the default 2x upscale puts keypoints +0.25 px off (measured
        # here), a bias that turns into ~0.004 deg whenever query and reference zoom differ
        return cv2.SIFT_create(nfeatures, 3, 0.02, 10, 1.6, cv2.CV_8U, True)
    if name == "akaze":
        return cv2.AKAZE_create()
    if name == "orb":
        return cv2.ORB_create(nfeatures=nfeatures)
    raise ValueError(f"unknown detector {name!r} (sift, akaze, orb)")


def to_gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def features_version() -> str:
    """The features' version: the plain one, plus the preprocessing when there is one."""
    return FEATURES_VERSION if photometry.METHOD == "none" else f"{FEATURES_VERSION}+{photometry.METHOD}"


def detect(
    image: np.ndarray,
    detector: str = "sift",
    nfeatures: int = QUERY_NFEATURES,
    mask: np.ndarray | None = None,
    max_width: int | None = None,
) -> FeatureSet:
    """Detect and describe keypoints on a BGR or gray image (after illumination-invariant
    preprocessing, the same for references and queries), on its detection level; uv and scale are
    in the full image's pixels."""
    level, factor = detection_level(to_gray(image), max_width)
    if mask is not None and np.any(factor != 1.0):
        mask = cv2.resize(mask, level.shape[::-1], interpolation=cv2.INTER_NEAREST)
    gray = photometry.prepare(level, photometry.METHOD)
    kps, desc = _detector(detector, nfeatures).detectAndCompute(gray, mask)
    if desc is None or not kps:
        d = 128 if detector == "sift" else 61 if detector == "akaze" else 32
        return FeatureSet(np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros((0, d), np.uint8))
    uv = to_full_resolution(np.array([k.pt for k in kps], dtype=np.float64), factor)
    scale = np.array([k.size for k in kps], dtype=np.float64) * factor[0]
    angle = np.array([k.angle for k in kps], dtype=np.float64)
    if detector == "sift":
        desc = np.clip(np.round(desc), 0, 255).astype(np.uint8)  # OpenCV SIFT values are integers
    return FeatureSet(uv, scale, angle, desc)


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelovic & Zisserman): L1-normalise, square root; unit L2 norm, float32."""
    d = descriptors.astype(np.float32)
    d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(d)


def matching_descriptors(features: FeatureSet, detector: str = "sift") -> np.ndarray:
    if detector == "sift":
        return root_sift(features.descriptors)
    return features.descriptors


@dataclass
class ReferenceFrame:
    image: str
    width: int
    height: int
    k: np.ndarray
    reported: tuple[float, float, float]
    rotation: np.ndarray  # refined R_wc of the reference map
    zoom: float = 1.0
    lens: Lens | None = None  # the calibrated lens (None: the pinhole of k)

    def __post_init__(self):
        if self.lens is None:
            self.lens = Lens.from_matrix(self.k, self.width, self.height)


@dataclass
class ReferenceMap:
    """Everything a query needs from a reference scan, loaded from features/."""

    frames: list[ReferenceFrame]
    features: list[FeatureSet]
    detector: str
    summary: dict = field(default_factory=dict)
    folder: Path | None = None  # the reference scan, for its images (photometric refinement)
    lens_calibration: LensCalibration | None = None
    index_files: dict[int, dict] = field(default_factory=dict)  # frame -> {"path", "sha256", "count"}
    _indices: dict[int, object] = field(default_factory=dict)
    _images: dict[int, np.ndarray] = field(default_factory=dict)

    def gray_image(self, i: int) -> np.ndarray | None:
        """Frame i's grey image from the reference folder (cached), None when unavailable."""
        if i not in self._images:
            frame = self.frames[i]
            path = None if self.folder is None else self.folder / frame.image
            if path is None or not path.is_file():
                return None
            try:
                image = decode_image(path.read_bytes(), str(path), (frame.width, frame.height), grayscale=True)
            except CaptureFormatError:
                return None  # photometric refinement then goes without it, as without the file
            self._images[i] = image
        return self._images[i]

    def descriptors_for_matching(self, i: int) -> np.ndarray:
        return self.index(i).descriptors

    def index(self, i: int):
        """Frame i's descriptor index (matching.DescriptorIndex): loaded from the trees saved with the
        features when they are there and intact, else built; once per map."""
        from calmon_core.matching import DescriptorIndex

        if i not in self._indices:
            descriptors = matching_descriptors(self.features[i], self.detector)
            saved = self.index_files.get(i)
            index = None
            if saved is not None and saved.get("count") == len(descriptors):
                try:
                    data = Path(saved["path"]).read_bytes()
                    if hashlib.sha256(data).hexdigest() == saved.get("sha256"):
                        index = DescriptorIndex(descriptors, tree_file=saved["path"])
                except (OSError, ValueError, cv2.error):
                    index = None  # a missing or damaged tree file costs only the time to build it
            self._indices[i] = index if index is not None else DescriptorIndex(descriptors)
        return self._indices[i]

    def bearings(self, i: int, uv: np.ndarray | None = None) -> np.ndarray:
        """World bearings of frame i's keypoints (or of given pixels) under the refined rotation."""
        fr = self.frames[i]
        pts = self.features[i].uv if uv is None else uv
        return fr.lens.pixel_rays(pts) @ fr.rotation.T

    def gauge_uncertainty(self) -> dict[str, float]:
        """Per axis, how uncertain the map's gauge is (gauge.apply_gauge: a registered scan's
        correction error, zero for an origin): every offset measured against it shares that error."""
        sigma = self.summary.get("gauge_uncertainty_deg") or {}
        return {a: float(sigma.get(a, 0.0)) for a in ("yaw", "pitch", "roll")}

    def lens_for(self, nominal: Lens, zoom: float) -> LensAtFrame:
        """The lens of a query frame at `zoom` whose manifest states `nominal` (calibration applied)."""
        if self.lens_calibration is None:
            return uncalibrated(nominal)
        return self.lens_calibration.at(zoom, nominal)


def _manifest_digest(folder: Path) -> str:
    return hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()


def cached_features_dir(reference_folder: str | Path, cache: str | Path) -> Path:
    """Where a reference's features live in a features cache (outside the reference folder): one
    folder per manifest content, so a changed scan never reads another scan's features."""
    return Path(cache) / _manifest_digest(Path(reference_folder))[:32]


def has_reference_features(reference_folder: str | Path, features_dir: str | Path | None = None) -> bool:
    """True when the features (features/, or `features_dir`) exist, were built by this version and
    match the manifest."""
    folder = Path(reference_folder)
    out = Path(features_dir) if features_dir is not None else folder / FEATURES_DIR
    meta_path = out / INDEX_META
    if not (meta_path.is_file() and (out / INDEX_FILE).is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
        return meta.get("version") == features_version() and meta.get("manifest_sha256") == _manifest_digest(folder)
    except (OSError, ValueError):
        return False


def _reference_frames(capture: Capture) -> list[ReferenceFrame]:
    frames = []
    for fr in capture.frames:
        t = fr.telemetry
        frames.append(
            ReferenceFrame(
                fr.image,
                fr.width,
                fr.height,
                fr.intrinsics().matrix(),
                (t.yaw, t.pitch, t.roll),
                rotation_from_ypr(t.yaw, t.pitch, t.roll),
                t.zoom,
                fr.lens(),
            )
        )
    return frames


def build_reference_features(
    reference_folder: str | Path, detector: str = "sift", features_dir: str | Path | None = None
) -> dict:
    """Detect features on every reference frame, refine the frames' rotations jointly from their
    overlaps, and write features/ (COLMAP database + calmon index), or `features_dir` instead.
    Returns a summary."""
    from calmon_core import colmap_db
    from calmon_core.reference_map import refine_reference_rotations

    folder = Path(reference_folder)
    capture = read_capture(folder)
    frames = _reference_frames(capture)
    features = []
    for i in range(len(capture.frames)):
        image = load_frame_image(folder, capture, i)
        features.append(detect(image, detector, REFERENCE_NFEATURES))
    refmap = ReferenceMap(frames, features, detector)
    change = refine_reference_rotations(refmap)
    lens_summary = refmap.lens_calibration.to_json_dict() if refmap.lens_calibration else None
    out = Path(features_dir) if features_dir is not None else folder / FEATURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "frame": np.concatenate([np.full(len(f), i, np.int32) for i, f in enumerate(features)])
        if features
        else np.zeros(0, np.int32),
        "uv": np.concatenate([f.uv for f in features]) if features else np.zeros((0, 2)),
        "scale": np.concatenate([f.scale for f in features]) if features else np.zeros(0),
        "angle": np.concatenate([f.angle for f in features]) if features else np.zeros(0),
        "descriptors": np.concatenate([f.descriptors for f in features]) if features else np.zeros((0, 128), np.uint8),
        "k": np.stack([f.k for f in frames]),
        "rotation": np.stack([f.rotation for f in frames]),
    }
    # parallel runs may build the same reference: private temp names, atomic moves, meta last
    tmp = out / f"{INDEX_FILE}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)  # uncompressed: every check loads it, and inflating cost more than the read
    tmp.replace(out / INDEX_FILE)
    colmap_db.write_database(out / COLMAP_DB, refmap)
    match_index = _save_match_indices(refmap, out)
    summary = {
        "frames": len(frames),
        "keypoints": int(sum(len(f) for f in features)),
        "detector": detector,
        "refined_rotation_change_deg": change,
        "lens": lens_summary,
    }
    meta = {
        "version": features_version(),
        "manifest_sha256": _manifest_digest(folder),
        "detector": detector,
        "frames": [
            {
                "image": f.image,
                "width": f.width,
                "height": f.height,
                "reported": list(f.reported),
                "refined_ypr": list(ypr_from_rotation(f.rotation)),
                "zoom": f.zoom,
                "lens": f.lens.to_json_dict(),
            }
            for f in frames
        ],
        "summary": summary,
        "match_index": match_index,
    }
    tmp_meta = out / f"{INDEX_META}.{os.getpid()}.tmp"
    tmp_meta.write_text(json.dumps(meta, indent=1))
    tmp_meta.replace(out / INDEX_META)
    return summary


def _save_match_indices(refmap: ReferenceMap, out: Path) -> list[dict | None]:
    """Save every frame's KD-trees beside the features (None for a frame without a float index)."""
    entries: list[dict | None] = []
    for i in range(len(refmap.frames)):
        index = refmap.index(i)
        if index.flann is None:
            entries.append(None)
            continue
        name = MATCH_INDEX_FILE.format(i)
        tmp = out / f"{name}.{os.getpid()}.tmp"
        index.save(tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        tmp.replace(out / name)
        entries.append({"file": name, "sha256": digest, "count": len(index)})
    return entries


def load_reference_map(reference_folder: str | Path, features_dir: str | Path | None = None) -> ReferenceMap:
    folder = Path(features_dir) if features_dir is not None else Path(reference_folder) / FEATURES_DIR
    meta = json.loads((folder / INDEX_META).read_text())
    # an NpzFile reads (and CRC-checks) an array again at every access: read each one once
    with np.load(folder / INDEX_FILE) as npz:
        data = {key: npz[key] for key in npz.files}
    frames = []
    features = []
    for i, fm in enumerate(meta["frames"]):
        frames.append(
            ReferenceFrame(
                fm["image"],
                fm["width"],
                fm["height"],
                data["k"][i],
                tuple(fm["reported"]),
                data["rotation"][i],
                float(fm.get("zoom", 1.0)),
                Lens.from_json_dict(fm["lens"]) if "lens" in fm else None,
            )
        )
        sel = data["frame"] == i
        features.append(FeatureSet(data["uv"][sel], data["scale"][sel], data["angle"][sel], data["descriptors"][sel]))
    summary = meta.get("summary", {})
    calibration = LensCalibration.from_json_dict(summary.get("lens"))
    refmap = ReferenceMap(frames, features, meta["detector"], summary, Path(reference_folder), calibration)
    for i, saved in enumerate(meta.get("match_index") or []):
        if isinstance(saved, dict) and isinstance(saved.get("file"), str):
            refmap.index_files[i] = {**saved, "path": str(folder / Path(saved["file"]).name)}
    return apply_gauge(refmap, reference_folder)  # orientations in the gauge of the original calibration
