"""A device's reference bank: reference sets per lighting regime, all in one gauge.

    reference_scan/manifest.json, images/, features/    the original reference (regime "day"),
                                                        its gauge.json when it was re-collected
    reference_scan/bank/{entry}/manifest.json, ...     one entry per regime or season
    reference_scan/bank/{entry}/gauge.json             its registration to reference_scan

An entry is a calmon.capture/1 reference scan of its own (collected on purpose, e.g. at night) or
grown from a confident check's own frames (their estimated true orientation is their telemetry).
Every entry is registered to the original reference (register_scan), so an offset measured against
any entry is relative to the original calibration. The estimator tries the entry whose regime
matches the query first and keeps the one that explains the query best (estimate_with_bank).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from calmon_core.capture_format import CaptureFormatError, encode_jpeg, load_frame_image, read_capture, write_capture
from calmon_core.gauge import (
    AXES,
    GAUGE_FILE,
    ZERO,
    frame_uncertainties,
    gauge_uncertainty,
    origin_gauge_id,
    read_gauge,
    write_gauge,
)
from calmon_core.layout import UnsafeNameError, check_segment
from calmon_core.models import Capture, CaptureKind, CaptureMode, Frame, Pose

BANK_DIR = "bank"
REGIMES = ("day", "dusk", "night")
DARKEST_FIRST = ("night", "dusk", "day")  # a query split evenly between two regimes is the darker one
MAX_REGISTRATION_SIGMA_DEG = 0.03  # a registration less certain than this would move every offset
FRAME_OUTLIER_DEG = 0.02  # a scan frame this far from the common correction had its own telemetry error
# only frames this certain may join an entry: a frame's error is carried into every later check
# matched against it, so it must stay far below the smallest offset anyone acts on (0.5 deg)
GROW_MAX_SIGMA_DEG = 0.01
GROW_MAX_FRAMES = 24
STRONG_INLIERS = 300  # a frame matched this well against its own regime's entry needs no other entry


class RegistrationError(CaptureFormatError):
    """A scan could not be tied to the earlier one (too little overlap or too uncertain)."""


@dataclass
class Registration:
    gauge_id: str
    correction_deg: dict[str, float]
    uncertainty_deg: dict[str, float]
    frames_used: int
    frames: int
    method: str

    def to_json_dict(self) -> dict:
        return {
            "gauge_id": self.gauge_id,
            "correction_deg": self.correction_deg,
            "uncertainty_deg": self.uncertainty_deg,
            "frames_used": self.frames_used,
            "frames": self.frames,
            "method": self.method,
        }


# ---------------------------------------------------------------------------- regimes


REGIME_SIZE = (160, 90)  # image_regime looks at a frame this small


def frame_regime(folder: str | Path, capture: Capture, index: int) -> str:
    """image_regime of a capture's frame, decoded no larger than it needs (a 1080p frame at 1/8)."""
    frame = capture.frames[index]
    reduced = next(
        (r for r in (8, 4, 2) if frame.width // r >= REGIME_SIZE[0] and frame.height // r >= REGIME_SIZE[1]), 1
    )
    return image_regime(load_frame_image(folder, capture, index, reduced=reduced))


def image_regime(image: np.ndarray) -> str:
    """'night' for an infrared (monochrome) frame, 'dusk' for a dim colour one, else 'day'."""
    if image.ndim == 2 or image.shape[2] == 1:
        return "night"
    small = cv2.resize(image, REGIME_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    chroma = float(np.mean(np.abs(small[..., 0] - small[..., 1]) + np.abs(small[..., 1] - small[..., 2])))
    if chroma < 3.0:
        return "night"
    grey = float(cv2.cvtColor(small.astype(np.uint8), cv2.COLOR_BGR2GRAY).mean())
    return "dusk" if grey < 70.0 else "day"


# ---------------------------------------------------------------------------- gauge


def _check_entry_name(name: str) -> str:
    try:
        return check_segment(name, "bank entry")
    except UnsafeNameError as exc:
        raise CaptureFormatError(str(exc)) from None


def register_scan(scan_folder: str | Path, anchor_folder: str | Path, *, rebase: bool = False) -> Registration:
    """Tie a new scan to an earlier one through their overlap and write the new scan's gauge.json.

    Each frame of the new scan is estimated against the earlier scan's map (in the earlier scan's
    own gauge); the robust mean of the frames' offsets (true - reported) is the scan's correction:
    in the earlier gauge frame i points at its telemetry + correction (the camera's constant
    per-angle offset, conventions.md). The new scan's own refinement is not used for this: it
    anchors the map at the telemetry average and spreads a pitch or roll offset unevenly. A camera that
    drifted 0.8 deg before it was re-scanned keeps reporting 0.8 deg against the new scan.
    rebase=True (after a deliberate re-calibration) starts a new gauge: no correction."""
    from calmon_core.estimation import _load_reference, combine_frames, estimate_frame

    scan, anchor = Path(scan_folder), Path(anchor_folder)
    (scan / GAUGE_FILE).unlink(missing_ok=True)  # the scan's own telemetry-anchored map first
    scan_capture, _ = _load_reference(scan)
    if rebase:
        record = {
            "gauge_id": origin_gauge_id(scan),
            "correction_deg": dict(ZERO),
            "uncertainty_deg": dict(ZERO),
            "method": "rebased",
            "rebased_from": read_gauge(anchor)["gauge_id"] if (anchor / "manifest.json").is_file() else None,
            "registered_at": datetime.now(UTC).isoformat(),
        }
        write_gauge(scan, record)
        return Registration(record["gauge_id"], dict(ZERO), dict(ZERO), 0, len(scan_capture.frames), "rebased")
    _, anchor_map = _load_reference(anchor)
    anchor_gauge = read_gauge(anchor)
    estimates = []
    for i, frame in enumerate(scan_capture.frames):
        image = load_frame_image(scan, scan_capture, i)
        fe = estimate_frame(anchor_map, frame, image).estimate
        if fe.success:
            estimates.append(fe)  # offsets: the frame's true orientation minus its telemetry
    # a registration to a registered scan inherits that scan's own registration error
    correction, sigma, used, _ = combine_frames(estimates, [anchor_map.gauge_uncertainty()] * len(estimates))
    if not used:
        raise RegistrationError(
            f"{scan}: no frame of the new scan matches the earlier reference {anchor}; "
            "they do not overlap (or the scene changed completely): re-scan in daylight, or rebase on purpose"
        )
    if max(sigma.values()) > MAX_REGISTRATION_SIGMA_DEG:
        raise RegistrationError(
            f"{scan}: registration to {anchor} is uncertain by {max(sigma.values()):.3f} deg "
            f"(limit {MAX_REGISTRATION_SIGMA_DEG}); offsets would move: collect the scan when the view matches better"
        )
    # a frame whose own telemetry was off (beyond its uncertainty) keeps its own estimate
    frame_corrections = {}
    for fe in estimates:
        if any(
            abs(fe.offsets_deg[a] - correction[a]) > max(4 * fe.uncertainty_deg[a], FRAME_OUTLIER_DEG) for a in AXES
        ):
            frame_corrections[fe.image] = {a: fe.offsets_deg[a] for a in AXES}
    record = {
        "gauge_id": anchor_gauge["gauge_id"],
        "correction_deg": correction,
        "frame_corrections_deg": frame_corrections,
        "uncertainty_deg": sigma,
        "registered_to": str(anchor),
        "method": "registered",
        "frames_used": len(used),
        "frames": len(scan_capture.frames),
        "registered_at": datetime.now(UTC).isoformat(),
    }
    write_gauge(scan, record)
    return Registration(anchor_gauge["gauge_id"], correction, sigma, len(used), len(scan_capture.frames), "registered")


def replace_reference(reference_folder: str | Path, new_scan: str | Path, *, rebase: bool = False) -> Registration:
    """Re-collection: register `new_scan` to the current reference (unless rebase), then move it
    into place. The bank entries stay (they are registered in the same gauge) unless rebased."""
    reference, new = Path(reference_folder), Path(new_scan)
    if (reference / "manifest.json").is_file():
        reg = register_scan(new, reference, rebase=rebase)
    else:
        reg = register_scan(new, new, rebase=True)
    bank = reference / BANK_DIR
    keep_bank = bank.is_dir() and not rebase
    staging = reference.with_name(reference.name + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    if reference.exists():
        reference.rename(staging)
    shutil.copytree(new, reference)
    if keep_bank:
        shutil.move(str(staging / BANK_DIR), str(reference / BANK_DIR))
    shutil.rmtree(staging, ignore_errors=True)
    return reg


# ---------------------------------------------------------------------------- entries


@dataclass
class BankEntry:
    name: str  # "reference" for the original, else the folder name under bank/
    folder: Path
    regime: str
    season: str | None = None


def _entry_regime(folder: Path, capture: Capture) -> tuple[str, str | None]:
    extra = capture.model_extra or {}
    regime = extra.get("regime")
    if regime not in REGIMES:
        regime = frame_regime(folder, capture, 0) if capture.frames else "day"
    return regime, extra.get("season")


def bank_entries(reference_folder: str | Path) -> list[BankEntry]:
    """The original reference first, then every bank entry (sorted by name)."""
    reference = Path(reference_folder)
    out = []
    cap = read_capture(reference)
    out.append(BankEntry("reference", reference, *_entry_regime(reference, cap)))
    bank = reference / BANK_DIR
    if bank.is_dir():
        for folder in sorted(p for p in bank.iterdir() if (p / "manifest.json").is_file()):
            entry_cap = read_capture(folder)
            out.append(BankEntry(folder.name, folder, *_entry_regime(folder, entry_cap)))
    return out


def add_bank_entry(
    reference_folder: str | Path, scan_folder: str | Path, name: str, *, regime: str, season: str | None = None
) -> Registration:
    """Copy a scan collected on purpose into bank/{name}/ and register it to the original reference."""
    if regime not in REGIMES:
        raise CaptureFormatError(f"regime must be one of {list(REGIMES)}, got {regime!r}")
    reference = Path(reference_folder)
    target = reference / BANK_DIR / _check_entry_name(name)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(scan_folder, target, ignore=shutil.ignore_patterns(GAUGE_FILE))
    cap = read_capture(target)
    extra = {"regime": regime, **({"season": season} if season else {})}
    write_capture(target, cap.model_copy(update=extra))
    try:
        return register_scan(target, reference)
    except CaptureFormatError:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _grown_image_prefix(query: Capture) -> str:
    """How the images a query's frames grew into an entry are named (by the query's start)."""
    return f"images/{query.started_at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}_"


def _holds_frames_of(entry: BankEntry, query: Capture) -> bool:
    if entry.name == "reference":
        return False
    own = _grown_image_prefix(query)
    return any(f.image.startswith(own) for f in read_capture(entry.folder).frames)


def grow_bank_entry(
    reference_folder: str | Path,
    name: str,
    query_folder: str | Path,
    estimate,
    *,
    regime: str,
    season: str | None = None,
) -> int:
    """Add a confident check's frames to bank/{name}/: each frame's telemetry becomes its
    estimated true orientation (in the original gauge), so the entry needs no registration of its
    own. That estimate's error is each frame's registration error: gauge.json keeps it per frame
    (`frame_uncertainty_deg`) and its rms over the entry's frames as `uncertainty_deg`, which every
    offset measured against the entry inherits (frames without a record count at the value the
    entry had). Returns how many frames were added (frames less certain than GROW_MAX_SIGMA_DEG
    are not)."""
    reference, query_folder = Path(reference_folder), Path(query_folder)
    target = reference / BANK_DIR / _check_entry_name(name)
    query = read_capture(query_folder)
    if target.joinpath("manifest.json").is_file():
        cap = read_capture(target)
        frames = list(cap.frames)
        record = read_gauge(target)
    else:
        cap = Capture(
            kind=CaptureKind.reference,
            deployment_name=query.deployment_name,
            device_id=query.device_id,
            mode=CaptureMode.reference,
            started_at=query.started_at,
            frames=[],
        )
        frames = []
        target.mkdir(parents=True, exist_ok=True)
        record = {
            "gauge_id": read_gauge(reference)["gauge_id"],
            "correction_deg": dict(ZERO),
            "uncertainty_deg": dict(ZERO),
            "method": "grown",
            "registered_to": str(reference),
            "registered_at": datetime.now(UTC).isoformat(),
        }
        write_gauge(target, record)
    correction = record["correction_deg"]
    entry_sigma = gauge_uncertainty(record)
    frame_sigmas = {f.image: dict(entry_sigma) for f in frames} | frame_uncertainties(record)
    images = {}
    added = 0
    for i, (frame, fe) in enumerate(zip(query.frames, estimate.frames, strict=True)):
        if not fe.success or max(fe.uncertainty_deg.values()) > GROW_MAX_SIGMA_DEG or len(frames) >= GROW_MAX_FRAMES:
            continue
        image = load_frame_image(query_folder, query, i)
        name_i = f"{_grown_image_prefix(query)}{i:03d}.jpg"
        images[name_i] = encode_jpeg(image, 95)
        true = {a: fe.estimated[a] - correction[a] for a in AXES}  # the entry's gauge.json adds it back
        k = frame.intrinsics().matrix()
        scale = fe.focal_scale or 1.0
        frames.append(
            Frame(
                image=name_i,
                captured_at=frame.captured_at,
                width=frame.width,
                height=frame.height,
                fx=float(k[0, 0] * scale),
                fy=float(k[1, 1] * scale),
                cx=float(k[0, 2]),
                cy=float(k[1, 2]),
                telemetry=Pose(**true, zoom=frame.telemetry.zoom),
            )
        )
        frame_sigmas[name_i] = {a: float(fe.uncertainty_deg[a]) for a in AXES}
        added += 1
    if added:
        kept = [frame_sigmas[f.image] for f in frames]
        rms = {a: round(math.sqrt(sum(fs[a] ** 2 for fs in kept) / len(kept)), 6) for a in AXES}
        write_gauge(target, {**record, "uncertainty_deg": rms, "frame_uncertainty_deg": frame_sigmas})
        extra = {"regime": regime, **({"season": season} if season else {})}
        write_capture(target, cap.model_copy(update={"frames": frames, **extra}), images)
    return added


def name_bank_entries(reference_folder: str | Path) -> None:
    """List the bank's entries in the reference's manifest: caches refresh when it changes."""
    reference = Path(reference_folder)
    names = [e.name for e in bank_entries(reference)[1:]]
    write_capture(reference, read_capture(reference).model_copy(update={"bank": names}))


def grow_from_check(reference_folder: str | Path, query_folder: str | Path, banked: BankEstimate) -> int:
    """A check's part in keeping the bank: a dusk or night query estimated with success adds its
    confident frames (grow_bank_entry's rule) to the entry named after its regime, so the next
    check in that light finds a view taken in it. Returns how many frames were added."""
    if banked.regime == "day" or not banked.estimate.success:
        return 0
    added = grow_bank_entry(reference_folder, banked.regime, query_folder, banked.estimate, regime=banked.regime)
    if added:
        name_bank_entries(reference_folder)
    return added


# ---------------------------------------------------------------------------- estimation


@dataclass
class BankEstimate:
    estimate: object  # calmon_core.estimation.Estimate
    regime: str  # of the query, from its images
    entries: list[str]  # per query frame, the bank entry its estimate came from (None: none worked)
    entry: str | None  # the entry most frames used
    gauge_id: str
    expected_inconclusive: bool  # a night (or dusk) query that no entry explains: not a camera fault

    def to_json_dict(self) -> dict:
        out = self.estimate.to_json_dict()
        out.update(
            {
                "regime": self.regime,
                "bank_entry": self.entry,
                "bank_entries_per_frame": self.entries,
                "gauge_id": self.gauge_id,
                "expected_inconclusive": self.expected_inconclusive,
            }
        )
        return out


def _most_common(items: list[str], weights: list[float], prefer: tuple[str, ...] = ()) -> str:
    """The item most entries have; a tie goes to the larger total weight, then to `prefer`'s order
    (never to set iteration order, which changes with the interpreter's hash seed)."""
    score: dict[str, tuple[int, float]] = {}
    for item, weight in zip(items, weights, strict=True):
        n, w = score.get(item, (0, 0.0))
        score[item] = (n + 1, w + weight)
    rank = {name: i for i, name in enumerate(prefer)}
    return max(sorted(score), key=lambda k: (*score[k], -rank.get(k, len(rank))))


def _order(entries: list[BankEntry], regime: str) -> list[BankEntry]:
    return sorted(entries, key=lambda e: (e.regime != regime, e.name != "reference"))


def estimate_with_bank(
    reference_folder: str | Path,
    query_folder: str | Path,
    *,
    threshold_deg: float = 0.5,
    refine_focal: bool = True,
    diagnostics_dir: str | Path | None = None,
) -> BankEstimate:
    """Offsets of a query against the best-matching entry of the device's reference bank, per frame:
    the entry of the query's regime first, the others when it does not explain the frame strongly;
    the conclusive answer with the most inliers wins. Offsets are in the original gauge. With
    diagnostics_dir, each frame's picture shows it against the entry that answered it."""
    from calmon_core.estimation import (
        Estimate,
        _load_reference,
        combine_frames,
        estimate_frame,
        write_frame_diagnostic,
    )

    reference, query_folder = Path(reference_folder), Path(query_folder)
    entries = bank_entries(reference)
    maps = {}
    query = read_capture(query_folder)
    if not query.frames:
        raise CaptureFormatError(f"{query_folder / 'manifest.json'}: query has no frames")
    images = [load_frame_image(query_folder, query, i) for i in range(len(query.frames))]
    regimes = [image_regime(img) for img in images]
    regime = _most_common(regimes, [1.0] * len(regimes), prefer=DARKEST_FIRST)
    # an entry grown from this very query (a re-estimate) would only repeat its first estimate
    entries = [e for e in entries if not _holds_frames_of(e, query)]
    frames, used_entries = [], []
    for i, (frame, image, frame_regime) in enumerate(zip(query.frames, images, regimes, strict=True)):
        best, best_entry = None, None
        for entry in _order(entries, frame_regime):
            if entry.name not in maps:
                maps[entry.name] = _load_reference(entry.folder)
            solution = estimate_frame(maps[entry.name][1], frame, image, refine_focal=refine_focal)
            fe = solution.estimate
            if best is None or (fe.success, fe.inliers) > (best.estimate.success, best.estimate.inliers):
                best, best_entry = solution, entry
            if fe.success and fe.inliers >= STRONG_INLIERS and entry.regime == frame_regime:
                break
        if diagnostics_dir is not None:
            capture, refmap = maps[best_entry.name]
            write_frame_diagnostic(diagnostics_dir, i, refmap, best_entry.folder, capture, frame, image, best)
        frames.append(best.estimate)
        used_entries.append(best_entry.name if best.estimate.success else None)
    gauge_sigmas = [maps[e][1].gauge_uncertainty() if e else dict(ZERO) for e in used_entries]
    offsets, sigma, used, note = combine_frames(frames, gauge_sigmas)
    gauge_id = read_gauge(reference)["gauge_id"]
    named = [(e, f.inliers) for e, f in zip(used_entries, frames, strict=True) if e]
    entry = _most_common([e for e, _ in named], [n for _, n in named]) if named else None
    if not used:
        logs = "; ".join(f.failure_log or f.image for f in frames)
        est = Estimate(False, None, None, None, frames, f"no query frame could be estimated: {logs}", 0, 0)
        expected = regime in ("night", "dusk")
        if expected:
            when = "at night (infrared)" if regime == "night" else "at dusk"
            est.failure_log = (
                f"expected {when}: the view does not match the reference bank well enough "
                f"(entries: {', '.join(e.name for e in entries)}), not a camera fault. " + logs
            )
        return BankEstimate(est, regime, used_entries, None, gauge_id, expected)
    breach = any(abs(v) > threshold_deg for v in offsets.values())
    est = Estimate(True, offsets, sigma, breach, frames, note, int(sum(f.inliers for f in used)), len(used))
    return BankEstimate(est, regime, used_entries, entry, gauge_id, False)


def query_regime(query_folder: str | Path) -> str:
    """The regime most of a query's frames were taken in, from their images."""
    query = read_capture(query_folder)
    regimes = [frame_regime(query_folder, query, i) for i in range(len(query.frames))]
    return _most_common(regimes, [1.0] * len(regimes), prefer=DARKEST_FIRST) if regimes else "day"


def lighting_note(result: BankEstimate) -> str | None:
    """What a check's row says about light when it was not a plain day against the original reference."""
    if result.regime == "day" and result.entry in (None, "reference"):
        return None
    return f"lighting: {result.regime}, bank entry {result.entry or 'none'}, gauge {result.gauge_id}"


def bank_summary(reference_folder: str | Path) -> list[dict]:
    """Entries with their regime, frame count and gauge (for metadata and `calmon` output)."""
    out = []
    for e in bank_entries(reference_folder):
        g = read_gauge(e.folder)
        out.append(
            {
                "entry": e.name,
                "regime": e.regime,
                "season": e.season,
                "frames": len(read_capture(e.folder).frames),
                "gauge_id": g["gauge_id"],
                "method": g.get("method"),
                "correction_deg": g["correction_deg"],
            }
        )
    return out
