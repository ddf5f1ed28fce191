"""Time of day, seasons and static scene changes for the simulated cameras.

A camera's frames follow a clock. The sun's elevation at the site (latitude/longitude, UTC) picks
the regime: day colour above +6 deg, dusk (civil twilight, colour, dim, noisy, street lamps on)
between +6 and -6 deg, and below -6 deg the camera switches to infrared like a real PTZ day/night
camera: the IR-cut filter leaves, the picture is monochrome, vegetation is bright (chlorophyll
reflects near infrared strongly), water and sky go black, the on-board illuminator lights the
centre more than the edges, contrast is flat, gain is high (heavy, slightly correlated sensor
noise) and lamps bloom with pools of light and the hard shadows they cast, none of which exist by
day. Seasons change colour and texture in the world (autumn foliage, snow that hides fine ground
texture) and static changes (a parked truck) appear where they were put.

Two stages, so everything that belongs to the world stays fixed in the world when the camera pans:
`lit_scene(scene, conditions)` transforms the panorama itself (vegetation, snow, lamps, shadows,
truck; cached), and `sensor(image, conditions, rng)` is the camera's own response applied to each
rendered frame (colour or IR, exposure, illuminator falloff, contrast, noise).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import cv2
import numpy as np

from calmon_core.solar import DAY_ABOVE_DEG, NIGHT_BELOW_DEG, sun_elevation_deg
from calmon_sim.scene import Scene

REGIMES = ("day", "dusk", "night")
SEASONS = ("summer", "autumn", "winter", "spring")  # winter = snow on the ground


@dataclass(frozen=True)
class SceneChange:
    """A static object in the world, e.g. a parked truck: centred at (yaw, pitch), size in degrees."""

    kind: str = "truck"
    yaw: float = 0.0
    pitch: float = -3.0
    width_deg: float = 8.0
    height_deg: float = 3.0


@dataclass(frozen=True)
class Conditions:
    """What the light and the world look like for one frame."""

    regime: str = "day"  # day, dusk, night (infrared)
    season: str = "summer"
    twilight: float = 0.0  # 0 at the bright end of dusk, 1 at its dark end
    ir_gain: float = 1.0  # infrared exposure: < 0.3 gives the very dark frames of a weak illuminator
    changes: tuple[SceneChange, ...] = ()

    def __post_init__(self):
        if self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {list(REGIMES)}, got {self.regime!r}")
        if self.season not in SEASONS:
            raise ValueError(f"season must be one of {list(SEASONS)}, got {self.season!r}")

    @property
    def is_plain_day(self) -> bool:
        return self.regime == "day" and self.season == "summer" and not self.changes


# ---------------------------------------------------------------------------- clock and sun


def season_at(when: datetime, latitude: float) -> str:
    """Meteorological season (southern hemisphere shifted by half a year)."""
    month = when.astimezone(UTC).month
    if latitude < 0:
        month = (month + 5) % 12 + 1
    return {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring"}.get(
        month, "summer" if month in (6, 7, 8) else "autumn"
    )


def conditions_at(
    when: datetime,
    latitude: float,
    longitude: float,
    *,
    season: str | None = None,
    changes: tuple[SceneChange, ...] = (),
    ir_gain: float = 1.0,
) -> Conditions:
    """The regime from the sun's elevation at the site; the season from the date unless given."""
    elev = sun_elevation_deg(when, latitude, longitude)
    if elev >= DAY_ABOVE_DEG:
        regime, twilight = "day", 0.0
    elif elev <= NIGHT_BELOW_DEG:
        regime, twilight = "night", 1.0
    else:
        regime, twilight = "dusk", (DAY_ABOVE_DEG - elev) / (DAY_ABOVE_DEG - NIGHT_BELOW_DEG)
    return Conditions(regime, season or season_at(when, latitude), round(twilight, 3), ir_gain, changes)


@dataclass
class SimClock:
    """Simulated time: starts at `start` and runs `speed` times faster than the wall clock
    (an accelerated day for tests and benchmarks); `set` jumps it."""

    start: datetime
    speed: float = 1.0
    _wall0: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        import time

        self._wall0 = time.time()

    def now(self) -> datetime:
        import time

        with self._lock:
            elapsed = (time.time() - self._wall0) * self.speed
            return datetime.fromtimestamp(self.start.timestamp() + elapsed, UTC)

    def set(self, when: datetime, speed: float | None = None) -> None:
        import time

        with self._lock:
            self.start, self._wall0 = when.astimezone(UTC), time.time()
            if speed is not None:
                self.speed = speed


class Lighting:
    """One camera's light: a clock at a site, or fixed conditions (set over HTTP for tests)."""

    def __init__(
        self,
        latitude: float = 48.85,
        longitude: float = 2.35,
        clock: SimClock | None = None,
        *,
        season: str | None = None,
        changes: tuple[SceneChange, ...] = (),
        ir_gain: float = 1.0,
        fixed: Conditions | None = None,
    ):
        self.latitude, self.longitude = latitude, longitude
        self.clock = clock
        self.season, self.changes, self.ir_gain = season, tuple(changes), ir_gain
        self.fixed = fixed
        self._lock = threading.Lock()

    def conditions(self) -> Conditions:
        with self._lock:
            if self.fixed is not None:
                return self.fixed
            if self.clock is None:
                return Conditions(season=self.season or "summer", changes=self.changes)
            when = self.clock.now()
        return conditions_at(
            when, self.latitude, self.longitude, season=self.season, changes=self.changes, ir_gain=self.ir_gain
        )

    def describe(self) -> dict:
        """The current conditions and clock, as GET /lighting and /status show them."""
        c = self.conditions()
        with self._lock:
            clock = None if self.clock is None else {"time": self.clock.now().isoformat(), "speed": self.clock.speed}
            fixed = self.fixed is not None
        return {
            "regime": c.regime,
            "season": c.season,
            "twilight": c.twilight,
            "ir_gain": c.ir_gain,
            "changes": [_change_dict(ch) for ch in c.changes],
            "clock": clock,
            "fixed": fixed,
            "site": {"latitude": self.latitude, "longitude": self.longitude},
        }

    def set(self, body: dict) -> Conditions:
        """Apply a POST /lighting body: {"time": ISO 8601, "speed": x} moves the clock;
        {"regime", "season", "twilight", "ir_gain", "changes"} fixes conditions; {"clock": true}
        returns to the clock. Unknown keys are an error naming them."""
        known = {"time", "speed", "regime", "season", "twilight", "ir_gain", "changes", "clock"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ValueError(f"unknown lighting keys {unknown} (expected some of {sorted(known)})")
        changes = tuple(parse_changes(body["changes"])) if "changes" in body else None
        with self._lock:
            if "time" in body:
                try:
                    when = datetime.fromisoformat(str(body["time"]).replace("Z", "+00:00"))
                except ValueError:
                    raise ValueError(f"time must be ISO 8601, got {body['time']!r}") from None
                if when.tzinfo is None:
                    raise ValueError(f"time must name its zone (e.g. ...Z), got {body['time']!r}")
                speed = float(body["speed"]) if "speed" in body else None
                if self.clock is None:
                    self.clock = SimClock(when, speed or 1.0)
                else:
                    self.clock.set(when, speed)
                self.fixed = None
            if body.get("clock"):
                self.fixed = None
            if changes is not None:
                self.changes = changes
            fixed_keys = {"regime", "season", "twilight", "ir_gain"} & set(body)
            if fixed_keys:
                base = self.fixed or Conditions(season=self.season or "summer", changes=self.changes)
                self.fixed = replace(
                    base,
                    regime=str(body.get("regime", base.regime)),
                    season=str(body.get("season", base.season)),
                    twilight=float(body.get("twilight", base.twilight)),
                    ir_gain=float(body.get("ir_gain", base.ir_gain)),
                    changes=self.changes,
                )
            elif changes is not None and self.fixed is not None:
                self.fixed = replace(self.fixed, changes=changes)
        return self.conditions()


def _change_dict(change: SceneChange) -> dict:
    return {k: getattr(change, k) for k in ("kind", "yaw", "pitch", "width_deg", "height_deg")}


def lighting_from_spec(spec) -> Lighting:
    """A camera's Lighting from its fleet-file `lighting` section (SimLightingSpec or None)."""
    if spec is None:
        return Lighting()
    changes = tuple(SceneChange(**c.model_dump()) for c in spec.changes)
    clock = SimClock(spec.start if spec.start is not None else datetime.now(UTC), spec.speed)
    fixed = None
    if spec.regime is not None:
        fixed = Conditions(
            spec.regime,
            spec.season or "summer",
            1.0 if spec.regime == "night" else 0.5 if spec.regime == "dusk" else 0.0,
            spec.ir_gain,
            changes,
        )
    return Lighting(
        spec.latitude, spec.longitude, clock, season=spec.season, changes=changes, ir_gain=spec.ir_gain, fixed=fixed
    )


def parse_changes(items) -> list[SceneChange]:
    if not isinstance(items, list):
        raise ValueError(f"changes must be a list, got {items!r}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) - {"kind", "yaw", "pitch", "width_deg", "height_deg"}:
            raise ValueError(f"changes[{i}]: expected {{kind, yaw, pitch, width_deg, height_deg}}, got {item!r}")
        if item.get("kind", "truck") != "truck":
            raise ValueError(f"changes[{i}].kind: only 'truck' is known, got {item.get('kind')!r}")
        out.append(SceneChange(**{k: (float(v) if k != "kind" else v) for k, v in item.items()}))
    return out


# ---------------------------------------------------------------------------- the world


def _masks(image: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float masks in [0, 1]: vegetation, sky, water, estimated from colour and position."""
    h, w = image.shape[:2]
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.float32)
    hue, sat, val = hsv[..., 0], hsv[..., 1] / 255, hsv[..., 2] / 255
    b, g, r = (image[..., i].astype(np.float32) for i in range(3))
    veg = ((hue >= 28) & (hue <= 90) & (sat > 0.18) & (val > 0.08) & (g >= r) & (g >= b * 0.9)).astype(np.float32)
    rows = np.linspace(0, 1, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    if kind != "equirect":
        rows = rows * 0.0 + 0.5 + 0.5 * (rows - 0.5)  # a photo: no known horizon, weaker prior
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    detail = cv2.GaussianBlur(np.abs(cv2.Laplacian(grey, cv2.CV_32F)), (0, 0), 3)
    smooth = detail < 6.0
    blueish = (b > r + 8) & (val > 0.35)
    sky = (blueish | ((sat < 0.12) & (val > 0.75))) & smooth & (rows < 0.52)
    water = (b >= r) & smooth & (rows > 0.5) & (val < 0.7) & (veg < 0.5)
    soft = lambda m: cv2.GaussianBlur(m.astype(np.float32), (0, 0), 2.0)  # noqa: E731
    return soft(veg), soft(sky), soft(water)


def _lamps(shape: tuple[int, int], kind: str, seed: int) -> list[tuple[int, int, float]]:
    """Street lamps at fixed places below the horizon: (x, y, radius px)."""
    h, w = shape
    rng = np.random.default_rng(seed)
    n = 14 if kind == "equirect" else 5
    lamps = []
    for _ in range(n):
        x = int(rng.integers(0, w))
        y = int(h * rng.uniform(0.46, 0.58)) if kind == "equirect" else int(h * rng.uniform(0.35, 0.75))
        lamps.append((x, y, float(w * rng.uniform(0.0012, 0.0025))))
    return lamps


def _add_blob(
    target: np.ndarray,
    x: float,
    y: float,
    rx: float,
    ry: float,
    peak: float,
    combine,
    halo: tuple[float, float] | None = None,
) -> None:
    """A Gaussian blob (plus an optional wide halo: (peak, variance factor)) combined into target in
    place, computed only in the window where it is visible (panoramas are tens of megapixels)."""
    h, w = target.shape[:2]
    reach = 4.0 * math.sqrt(halo[1]) if halo else 4.0
    x0, x1 = max(0, int(x - reach * rx)), min(w, int(x + reach * rx) + 1)
    y0, y1 = max(0, int(y - reach * ry)), min(h, int(y + reach * ry) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d2 = ((xx - x) / rx) ** 2 + ((yy - y) / ry) ** 2
    blob = peak * np.exp(-d2 / (2.0 if halo else 1.0))
    if halo:
        blob = blob + halo[0] * np.exp(-d2 / halo[1])
    window = target[y0:y1, x0:x1]
    window[...] = combine(window, blob)


def _smooth_field(shape: tuple[int, int], seed: int, scale: int, lo: float, hi: float) -> np.ndarray:
    """A smooth random field in [lo, hi] with features about `scale` pixels wide."""
    h, w = shape
    rng = np.random.default_rng(seed)
    small = rng.random((max(2, h // scale), max(2, w // scale))).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    big = (big - big.min()) / max(1e-6, float(big.max() - big.min()))
    return lo + (hi - lo) * big


def _truck(img: np.ndarray, change: SceneChange, scene: Scene) -> None:
    """Paint a parked truck (box body, cab, wheels, logo stripe) onto the panorama, in place."""
    h, w = img.shape[:2]
    if scene.kind == "equirect":
        px_per_deg = w / 360.0
        cx = (change.yaw / 360 + 0.5) * w
        cy = (0.5 - change.pitch / 180) * h
    else:
        px_per_deg = w / scene.plane_hfov_deg
        cx, cy = w / 2 + change.yaw * px_per_deg, h / 2 - change.pitch * px_per_deg
    bw, bh = change.width_deg * px_per_deg, change.height_deg * px_per_deg
    x0, y0 = int(cx - bw / 2), int(cy - bh / 2)
    x1, y1 = int(cx + bw / 2), int(cy + bh / 2)
    box_end = int(x0 + 0.72 * bw)
    cv2.rectangle(img, (x0, y0), (box_end, y1), (225, 228, 230), -1)
    cv2.rectangle(img, (x0, int(y0 + 0.45 * bh)), (box_end, int(y0 + 0.58 * bh)), (40, 40, 200), -1)
    for k in range(1, 6):  # panel seams
        xs = int(x0 + k * (box_end - x0) / 6)
        cv2.line(img, (xs, y0), (xs, y1), (150, 150, 150), max(1, int(bw / 300)))
    cab_top = int(y0 + 0.3 * bh)
    cv2.rectangle(img, (box_end + 2, cab_top), (x1, y1), (60, 90, 170), -1)
    cv2.rectangle(
        img, (box_end + int(0.05 * bw), cab_top + int(0.08 * bh)), (x1 - 3, int(y0 + 0.55 * bh)), (70, 60, 50), -1
    )
    wheel = max(2, int(0.14 * bh))
    for xw in (x0 + 0.12 * bw, x0 + 0.28 * bw, x0 + 0.6 * bw, x1 - 0.1 * bw):
        cv2.circle(img, (int(xw), y1), wheel, (25, 25, 25), -1, cv2.LINE_AA)
        cv2.circle(img, (int(xw), y1), max(1, wheel // 2), (140, 140, 140), -1, cv2.LINE_AA)


def _snow(img: np.ndarray, veg: np.ndarray, sky: np.ndarray, water: np.ndarray, seed: int) -> np.ndarray:
    """Snow lies on the ground and the trees and hides their fine texture; walls and edges stay."""
    f = img.astype(np.float32)
    h, w = img.shape[:2]
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    # snow settles where the surface is flat-ish (weak vertical gradients) and low in the view
    flat = np.exp(-np.abs(gy) / 60.0) * np.exp(-np.abs(gx) / 120.0)
    rows = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    ground = np.clip((rows - 0.5) / 0.1, 0, 1)
    cover = np.clip(ground * (0.35 + 0.65 * flat) * _smooth_field((h, w), seed + 7, 40, 0.6, 1.25), 0, 1)
    cover = np.maximum(cover, 0.85 * veg)
    cover *= 1.0 - water  # open water stays dark
    cover = cv2.GaussianBlur(cover, (0, 0), 1.5)[..., None]
    snow = 236 + np.random.default_rng(seed).normal(0, 3, (h, w, 1)).astype(np.float32)
    snow = np.concatenate([snow + 4, snow, snow - 3], axis=2)  # a faint blue cast in the shade
    out = f * (1 - cover) + snow * cover
    overcast = sky[..., None]
    out = out * (1 - overcast) + (0.15 * out + 0.85 * np.float32(200)) * overcast  # winter sky: flat grey
    return np.clip(out, 0, 255)


def _autumn(img: np.ndarray, veg: np.ndarray, seed: int) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.float32)
    shift = _smooth_field(img.shape[:2], seed + 3, 25, 12, 32)  # green -> yellow/orange/red, patchy
    hsv[..., 0] = np.where(veg > 0.5, np.maximum(hsv[..., 0] - shift, 5), hsv[..., 0])
    hsv[..., 1] = np.where(veg > 0.5, np.minimum(hsv[..., 1] * 1.2, 255), hsv[..., 1])
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    # thinner canopies: some leaves are gone and the texture underneath changes
    fallen = (_smooth_field(img.shape[:2], seed + 5, 6, 0, 1) > 0.7) & (veg > 0.5)
    out[fallen] = 0.6 * out[fallen] + 0.4 * np.array([40, 60, 80], np.float32)
    return out


def _night_world(img: np.ndarray, veg, sky, water, scene: Scene, seed: int) -> np.ndarray:
    """The world in near infrared under the camera's illuminator and the street lamps (grey, float)."""
    b, g, r = (img[..., i].astype(np.float32) for i in range(3))
    nir = 0.62 * r + 0.28 * g + 0.10 * b  # most materials: close to their red reflectance
    nir_veg = 120 + 0.75 * g + 0.35 * r  # chlorophyll reflects NIR: foliage glows, texture kept
    nir = nir * (1 - veg) + np.minimum(nir_veg, 250) * veg
    nir = nir * (1 - 0.9 * water)  # water absorbs NIR
    nir = nir * (1 - 0.95 * sky)  # the sky gives nothing back
    h, w = nir.shape
    # the scene is not uniformly lit: near things in the illuminator's beam, far ones fade, lamp
    # pools in between
    light = _smooth_field((h, w), seed + 11, 160, 0.35, 1.0)
    lamps = _lamps((h, w), scene.kind, seed)
    for x, y, rad in lamps:
        # a lamp's pool of light on the ground below it, wide and soft
        _add_blob(light, x, y + 6 * rad, 14 * rad, 7 * rad, 0.9, np.add)
    out = nir * light
    shade = np.ones((h, w), np.float32)
    rng = np.random.default_rng(seed + 13)
    for x, y, rad in lamps:
        # hard shadows thrown by poles and kerbs in the lamp's light: dark wedges that day never had
        for _ in range(2):
            ang = rng.uniform(-1.2, 1.2)
            length = rad * rng.uniform(8, 18)
            width = rad * rng.uniform(0.8, 1.8)
            p0 = np.array([x, y + 6 * rad])
            p1 = p0 + length * np.array([math.sin(ang), math.cos(ang)])
            poly = np.array([p0 - [width / 2, 0], p0 + [width / 2, 0], p1 + [width, 0], p1 - [width, 0]], np.int32)
            cv2.fillConvexPoly(shade, poly, 0.35, cv2.LINE_AA)
    out = out * shade
    for x, y, rad in lamps:
        # the lamp itself, saturated, with a bloom around it
        _add_blob(out, x, y, rad, rad, 255.0, np.maximum, halo=(140.0, 30.0))
    return np.clip(out, 0, 255)


def _dusk_lamps(img: np.ndarray, scene: Scene, seed: int) -> np.ndarray:
    """Warm sodium lamps switched on at dusk (colour), with their glow."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    for x, y, rad in _lamps((h, w), scene.kind, seed):
        for c, tint in enumerate((0.35, 0.75, 1.0)):
            _add_blob(out[..., c], x, y, rad, rad, 255.0 * tint, np.add, halo=(90.0 * tint, 40.0))
    return np.clip(out, 0, 255)


def _world_image(scene: Scene, regime: str, season: str, changes: tuple[SceneChange, ...]) -> np.ndarray:
    seed = sum(ord(c) for c in scene.label) * 7919 % (1 << 31)
    img = scene.image.copy()
    for change in changes:
        _truck(img, change, scene)
    veg, sky, water = _masks(img, scene.kind)
    world = img.astype(np.float32)
    if season == "winter":
        world = _snow(img, veg, sky, water, seed)
        veg = veg * 0.15  # snow-covered trees no longer show foliage in NIR
    elif season == "autumn":
        world = _autumn(img, veg, seed)
        veg = veg * 0.6  # yellowing leaves reflect less NIR
    elif season == "spring":
        world = world * (1 - veg[..., None]) + np.clip(world * [0.9, 1.12, 0.95], 0, 255) * veg[..., None]
    world8 = np.clip(world, 0, 255).astype(np.uint8)
    if regime == "night":
        grey = _night_world(world8, veg, sky, water, scene, seed).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if regime == "dusk":
        return _dusk_lamps(world8, scene, seed).astype(np.uint8)
    return world8


# Entries keep their source scene: an id() is reused once its object is freed, so a hit must be that same object.
_LIT_CACHE: dict[tuple, tuple[Scene, Scene]] = {}
_LIT_LOCK = threading.Lock()
_LIT_CACHE_SIZE = 8


def lit_scene(scene: Scene, conditions: Conditions) -> Scene:
    """The scene under these conditions (the same object for a plain summer day); cached."""
    if conditions.is_plain_day:
        return scene
    key = (id(scene), conditions.regime, conditions.season, conditions.changes)
    with _LIT_LOCK:
        hit = _LIT_CACHE.get(key)
        if hit is not None and hit[0] is scene:
            return hit[1]
    image = _world_image(scene, conditions.regime, conditions.season, conditions.changes)
    lit = Scene(image, scene.kind, scene.plane_hfov_deg, scene.label)
    with _LIT_LOCK:
        _LIT_CACHE.pop(key, None)
        if len(_LIT_CACHE) >= _LIT_CACHE_SIZE:
            _LIT_CACHE.pop(next(iter(_LIT_CACHE)))
        _LIT_CACHE[key] = (scene, lit)
    return lit


# ---------------------------------------------------------------------------- the sensor


def sensor(image: np.ndarray, conditions: Conditions, rng: np.random.Generator | None = None) -> np.ndarray:
    """The camera's response to the light it gets, applied to a rendered (world-lit) frame."""
    if conditions.regime == "day":
        return image
    rng = rng or np.random.default_rng()
    h, w = image.shape[:2]
    f = image.astype(np.float32)
    if conditions.regime == "dusk":
        t = conditions.twilight
        exposure = 0.75 - 0.5 * t  # auto-exposure loses the race against the sky
        f = f * exposure * np.array([1.08, 0.98, 0.9], np.float32)  # bluish twilight
        sigma = 2.0 + 5.0 * t
        noise = rng.normal(0, sigma, (h, w, 1)).astype(np.float32) + rng.normal(0, sigma / 2, (h, w, 3))
        return np.clip(f + noise, 0, 255).astype(np.uint8)
    grey = f[..., 0]  # the world image is already monochrome
    # the illuminator's beam: bright centre, dark corners
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rr = ((xx - w / 2) / (0.62 * w)) ** 2 + ((yy - h / 2) / (0.62 * w)) ** 2
    grey = grey * (0.35 + 0.75 * np.exp(-rr))
    # flat contrast: the auto-gain lifts the blacks and compresses the range
    mean = float(grey.mean())
    grey = 0.55 * (grey - mean) + mean + 18.0
    # optics without the IR-cut filter focus NIR a little behind: slightly soft
    grey = cv2.GaussianBlur(grey, (0, 0), 0.9)
    # high gain: heavy shot + read noise, partly correlated by the demosaic/denoise pipeline
    shot = rng.normal(0, 1, (h, w)).astype(np.float32) * np.sqrt(np.maximum(grey, 1.0)) * 0.9
    read = cv2.GaussianBlur(rng.normal(0, 7.0, (h, w)).astype(np.float32), (0, 0), 0.7) * 1.6
    grey = grey + shot + read + rng.normal(0, 2.5, (h, w)).astype(np.float32)
    # a weak illuminator or a far scene: the gain is at its limit and the whole signal (noise
    # included) stays low, quantised to a few grey levels
    grey = np.clip(conditions.ir_gain * grey, 0, 255).astype(np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def render_frame(
    scene: Scene,
    conditions: Conditions,
    yaw: float,
    pitch: float,
    roll: float,
    hfov_deg: float,
    width: int,
    height: int,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A frame at the true pose under the conditions (world, then sensor)."""
    image = lit_scene(scene, conditions).render(yaw, pitch, roll, hfov_deg, width, height)
    return sensor(image, conditions, rng)
