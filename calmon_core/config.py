"""calmon's configuration: calibration_monitoring.ini (settings) and devices.yaml (the fleet).

Secrets are never written in the files: values like ${SLACK_WEBHOOK_URL} are read from the
environment at load time, and AWS credentials come from the standard AWS credential chain.
"""

from __future__ import annotations

import configparser
import math
import os
import re
import secrets
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from calmon_core.alert_policy import AlertPolicySettings, parse_maintenance
from calmon_core.camera_config import (
    CameraProtocol,
    IsapiOptions,
    OnvifOptions,
    TelemetryConfig,
    VapixOptions,
    reject_url_credentials,
)
from calmon_core.check import DEFAULT_THRESHOLD_DEG
from calmon_core.layout import DEFAULT_BUCKET, UnsafeNameError, check_segment
from calmon_core.lens import CalibrationAtZoom, calibration_at_zoom, zoom_sweep_poses
from calmon_core.models import Intrinsics, Pose

SETTINGS_FILE = "calibration_monitoring.ini"
DEVICES_FILE = "devices.yaml"
DEFAULT_CONFIG_DIR = Path("configs")
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a fleet of thousands of devices is well under this
# values a config may hold once its YAML aliases are expanded: anchors and merge keys are fine,
# a small file of nested aliases that expands to billions of values ("billion laughs") is not
MAX_CONFIG_VALUES = 1_000_000
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """Every problem found in a configuration, each naming the file and the key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def expand_env(value: str, substituted: dict[str, str] | None = None) -> str:
    """Replace ${NAME} and ${NAME:-default} with the environment's values ('' when unset).

    Each value taken from the environment is recorded in `substituted` (value -> NAME), so that
    error messages can name the variable instead of printing what may be a secret.
    """

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            return match.group(2) or ""
        value = os.environ[name]
        if substituted is not None and value:
            substituted[value] = name
        return value

    return _ENV_REF.sub(one, value)


def expand_env_in_values(node: Any, fill: Callable[[str], str]) -> Any:
    """`fill` applied to every string value of a parsed document, never to keys or structure."""
    if isinstance(node, str):
        return fill(node)
    if isinstance(node, dict):
        return {key: expand_env_in_values(value, fill) for key, value in node.items()}
    if isinstance(node, list):
        return [expand_env_in_values(value, fill) for value in node]
    return node


def check_config_size(path: Path) -> None:
    """Refuse a config file too large to be one, before reading it (parsing 40 MB of YAML takes minutes)."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: {size:,} bytes, larger than the {MAX_CONFIG_BYTES:,} bytes a config file may be"])


def _expanded_values(raw: Any) -> int:
    """How many values the document holds with every alias expanded, counted without expanding
    (each shared node once, memoised by identity)."""
    counts: dict[int, int] = {}

    def count(node: Any) -> int:
        if not isinstance(node, dict | list):
            return 1
        key = id(node)
        if key not in counts:
            counts[key] = 0  # a self-referencing alias counts once instead of recursing forever
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            counts[key] = min(1 + sum(count(c) for c in children), MAX_CONFIG_VALUES + 1)
        return counts[key]

    return count(raw)


def read_config_yaml(path: Path) -> tuple[Any, dict[str, str]]:
    """A YAML config file parsed, then ${VAR} expanded into its values: (document, value -> NAME).

    An environment value is data, never YAML: each ${...} is parsed as a placeholder word (valid
    anywhere, quoted or not, block or flow style) and the value goes into the parsed strings, so
    'x, host: attacker.example' stays one string.
    """
    check_config_size(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not a UTF-8 text file: {exc.reason} at byte {exc.start}"]) from exc
    nonce = secrets.token_hex(6)
    references: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        word = f"calmon-env-{nonce}-{len(references)}"
        references[word] = match.group(0)
        return word

    try:
        raw = yaml.safe_load(_ENV_REF.sub(placeholder, text))
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    except RecursionError as exc:
        raise ConfigError([f"{path}: nested too deeply to be a config file"]) from exc
    if _expanded_values(raw) > MAX_CONFIG_VALUES:
        raise ConfigError(
            [f"{path}: its YAML aliases expand to more than {MAX_CONFIG_VALUES:,} values; write the values out"]
        )
    substituted: dict[str, str] = {}
    words = re.compile("|".join(re.escape(w) for w in references)) if references else None

    def fill(value: str) -> str:
        return words.sub(lambda m: expand_env(references[m.group(0)], substituted), value) if words else value

    return expand_env_in_values(raw, fill), substituted


# ----------------------------------------------------------------------------- settings (.ini)


class AwsSettings(BaseModel):
    region: str = "us-east-1"
    endpoint_url: str | None = None  # S3-compatible stores, moto in tests


class StorageSettings(BaseModel):
    backend: Literal["local", "s3"] = "local"
    bucket: str = DEFAULT_BUCKET
    local_root: str = ".calmon/object-store"  # the embedded default; relative to the working dir


class ResultsSettings(BaseModel):
    catalog: Literal["sqlite", "glue", "rest"] = "sqlite"
    catalog_name: str = "calmon"
    database: str = "calibration_monitoring"
    table: str = "calibration_results"
    warehouse: str = ".calmon/warehouse"  # local folder or s3:// URI
    sqlite_path: str = ".calmon/catalog.db"
    rest_uri: str | None = None
    # Every check commits a snapshot, and every reader parses the list of them: the maintenance job
    # expires older ones (Athena time travel reaches back this far) and merges the small files.
    snapshot_retention_hours: float = Field(default=2, gt=0)


class SlackSettings(BaseModel):
    webhook_url: SecretStr | None = None
    channel: str = "calibration_monitoring"
    files_base_url: str | None = None  # e.g. an S3 console URL prefix for "files" links


class CheckSettings(BaseModel):
    threshold_deg: float = Field(default=DEFAULT_THRESHOLD_DEG, gt=0)  # breach: any |offset| above this
    # a confident dusk or night check adds its frames to the device's reference bank (the entry of
    # its regime), so later checks in that light match a view taken in it
    grow_bank: bool = True


class CaptureSettings(BaseModel):
    stabilize_time: float = Field(default=30, ge=0)
    timeout: float | None = Field(default=None, gt=0)
    active_ptz_stops: list[tuple[float, float, float]] = []
    deadband_deg: float = Field(default=0.0, ge=0)
    image_motion_px: float = Field(default=1.0, gt=0)  # picture shift that betrays frozen telemetry
    reference_stabilize_time: float = Field(default=3, ge=0)  # calmon drives the camera itself
    workdir: str = ".calmon/work"  # local copies of captures and the reference cache


class ScheduleSettings(BaseModel):
    cadence: Literal["hourly", "daily"] = "hourly"
    # The partitions' first day (YYYY-MM-DD): every hour from it is a partition, and the ones never
    # checked show as Missing. Unset: the day calmon first loaded the site, as recorded in its
    # object store (calmon_assets/defs/partitions.py), so no months of checks nobody meant to run.
    start_date: str | None = None
    cron: str | None = None  # overrides the cadence's default cron
    max_concurrent_per_deployment: int = Field(default=4, gt=0)
    reference_max_age_days: float = Field(default=90, gt=0)
    maintenance_cron: str = "50 * * * *"  # results table upkeep, away from the checks at :05

    @field_validator("start_date")
    @classmethod
    def _a_day(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError(f"start_date {value!r} is not a day YYYY-MM-DD, e.g. 2026-12-02") from None


class ExecutionSettings(BaseModel):
    # How a launched run executes its steps: in its own process (a check's steps run one after the
    # other, and a process per step costs more CPU than the check), one process per step, or one
    # Kubernetes Job per step (dagster-k8s's k8s_job_executor).
    executor: Literal["in_process", "multiprocess", "k8s"] = "in_process"


class CorrectionSettings(BaseModel):
    # A retained MQTT message per device with its current correction (calmon_core.corrections),
    # published on its deployment's broker after each conclusive check; unset: none is published.
    # May name {deployment} and {device}, e.g. calmon/{deployment}/{device}/correction.
    mqtt_topic: str | None = None

    @field_validator("mqtt_topic")
    @classmethod
    def _usable_topic(cls, value: str | None) -> str | None:
        from calmon_core.corrections import topic_problem

        if value is not None and (problem := topic_problem(value)):
            raise ValueError(problem)
        return value


class UiSettings(BaseModel):
    # What a check's materialization carries into Dagster's event log: `preview` = small inline
    # pictures (diagnostic, trend, query frame; ~35 KB an event) beside links to the full ones in
    # the object store; `links` = the links only (~3 KB), for fleets whose event log would
    # otherwise grow by gigabytes a day (benchmarks/dagster_scale.py).
    pictures: Literal["preview", "links"] = "preview"


class Settings(BaseModel):
    aws: AwsSettings = AwsSettings()
    storage: StorageSettings = StorageSettings()
    results: ResultsSettings = ResultsSettings()
    slack: SlackSettings = SlackSettings()
    check: CheckSettings = CheckSettings()
    capture: CaptureSettings = CaptureSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    alerts: AlertPolicySettings = AlertPolicySettings()
    execution: ExecutionSettings = ExecutionSettings()
    corrections: CorrectionSettings = CorrectionSettings()
    ui: UiSettings = UiSettings()


def parse_stops(text: str) -> list[tuple[float, float, float]]:
    """'pan,tilt,zoom; pan,tilt,zoom' -> list of triples; a ValueError names every bad stop."""
    stops, bad = [], []
    for chunk in re.split(r"[;\n]", text):
        chunk = chunk.strip()
        if not chunk:
            continue
        parts = [p.strip() for p in chunk.split(",")]
        if len(parts) != 3:
            bad.append(f"stop {chunk!r} is not a pan,tilt,zoom triple")
            continue
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            bad.append(f"stop {chunk!r} has a part that is not a number")
            continue
        if not all(math.isfinite(v) for v in values):
            bad.append(f"stop {chunk!r} has a non-finite number")
            continue
        stops.append(values)
    if bad:
        raise ValueError("; ".join(bad))
    return stops  # type: ignore[return-value]


_SECRET_KEYS = ("password", "secret", "token", "webhook", "credential", "key")


def _pydantic_problems(
    error: ValidationError, source: str, prefix: str = "", substituted: dict[str, str] | None = None
) -> list[str]:
    """One line per problem, naming file and key. The offending value is shown only when it cannot be a
    secret: never for a secret-like key or an unknown key, and a value from the environment is named
    by its variable."""
    problems = []
    for item in error.errors():
        loc = prefix
        for part in item["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        problems.append(f"{source}: {loc or '<root>'}: {item['msg']}{_shown_input(item, substituted or {})}")
    return problems


def _shown_input(item: Any, substituted: dict[str, str]) -> str:
    got = item.get("input")
    if isinstance(got, dict) or item["type"] == "extra_forbidden":
        return ""
    names = [str(part).lower() for part in item["loc"]]
    if any(word in name for name in names for word in _SECRET_KEYS) or "credentials inside a URL" in item["msg"]:
        return " (value not shown)"
    text = repr(got)
    from_env = sorted({name for value, name in substituted.items() if value in text})
    if from_env:
        return f" (got the value of {', '.join('${' + n + '}' for n in from_env)})"
    return f" (got {text})"


def env_reference(path: str | Path, section: str, key: str) -> str | None:
    """The environment variable a setting reads (`${NAME}` or `${NAME:-...}`), if that is all it is.

    Secrets configured this way reach Dagster as EnvVar, so the UI never shows their values.
    """
    parser = configparser.ConfigParser(interpolation=None)
    if not Path(path).exists():
        return None
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None  # load_settings reports the broken file
    raw = parser.get(section, key, fallback="").strip()
    match = _ENV_REF.fullmatch(raw)
    return match.group(1) if match else None


# Keys calmon does not read, accepted so that files which set them still load: the Athena workgroup
# and output location belong to whoever queries, and telemetry arrives at the rate each device sends.
UNUSED_KEYS = {("results", "athena_workgroup"), ("results", "athena_output_location"), ("capture", "telemetry_rate_hz")}


def _move_deprecated_threshold(raw: dict[str, Any], path: Path) -> bool:
    """`[slack] threshold_deg` is read as `[check] threshold_deg` (which wins when both are set);
    True when the value used is the one under [slack]."""
    legacy = raw.get("slack", {}).pop("threshold_deg", None)
    if legacy is None:
        return False
    warnings.warn(
        f"{path}: [slack] threshold_deg is deprecated, write it as [check] threshold_deg",
        DeprecationWarning,
        stacklevel=3,
    )
    check = raw.setdefault("check", {})
    if "threshold_deg" in check:
        return False
    check["threshold_deg"] = legacy
    return True


def load_settings(path: str | Path | None) -> Settings:
    """Settings from an .ini file; a missing file gives the embedded defaults."""
    if path is None or not Path(path).exists():
        return Settings()
    path = Path(path)
    check_config_size(path)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not a valid INI file: {exc}"]) from exc
    raw: dict[str, Any] = {}
    problems: list[str] = []
    substituted: dict[str, str] = {}
    known = set(Settings.model_fields)
    for section in parser.sections():
        if section not in known:
            problems.append(f"{path}: [{section}]: unknown section (expected one of {sorted(known)})")
            continue
        values: dict[str, Any] = {}
        for key, value in parser.items(section):
            if (section, key) in UNUSED_KEYS:
                warnings.warn(
                    f"{path}: [{section}] {key} is not used by calmon; remove it", DeprecationWarning, stacklevel=2
                )
                continue
            value = expand_env(value, substituted).strip()
            if value == "":
                continue
            if section == "capture" and key == "active_ptz_stops":
                try:
                    values[key] = parse_stops(value)
                except ValueError as exc:
                    problems.append(f"{path}: [capture] active_ptz_stops: {exc}")
                continue
            if section == "alerts" and key == "maintenance":
                try:
                    values[key] = parse_maintenance(value)
                except ValueError as exc:
                    problems.append(f"{path}: [alerts] maintenance: {exc}")
                continue
            values[key] = value
        raw[section] = values
    threshold_under_slack = _move_deprecated_threshold(raw, path)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        found = _pydantic_problems(exc, str(path), substituted=substituted)
        if threshold_under_slack:  # name the key where the file has it
            found = [p.replace(": check.threshold_deg:", ": slack.threshold_deg:") for p in found]
        problems.extend(found)
        settings = None
    for section, model in raw.items():
        fields = Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
        for key in model:
            if key not in fields:
                problems.append(f"{path}: [{section}] {key}: unknown key (expected one of {sorted(fields)})")
    if problems:
        raise ConfigError(problems)
    assert settings is not None
    return settings


# The first day of the self-contained sites' partitions: the histories the tests and benchmarks
# replay start after it, and the processes that run them load the same partitions.
LOCAL_SITE_START_DATE = "2026-01-01"


def local_site_settings(
    root: str | Path,
    *,
    webhook_env: str = "SLACK_WEBHOOK_URL",
    stabilize_time: float = 30,
    timeout: float = 90,
    reference_stabilize_time: float = 1,
    threshold_deg: float = DEFAULT_THRESHOLD_DEG,
    s3_endpoint: str | None = None,
    max_concurrent_per_deployment: int | None = None,
    snapshot_retention_hours: float | None = None,
    written_by: str = "calmon",
    alert_policy: str | None = None,
    start_date: str = LOCAL_SITE_START_DATE,
) -> str:
    """calibration_monitoring.ini for a self-contained site under `root`: object store (or an
    S3-compatible endpoint), SQLite Iceberg catalog and capture work folder all inside it. What the
    demo, the benchmarks and the tests run on; the webhook is referenced by variable name only."""
    if s3_endpoint:
        storage = (
            f"[storage]\nbackend = s3\nbucket = {DEFAULT_BUCKET}\n\n"
            f"[aws]\nregion = us-east-1\nendpoint_url = {s3_endpoint}\n"
        )
    else:
        storage = f"[storage]\nbackend = local\nlocal_root = {root}/object-store\n"
    results = f"[results]\ncatalog = sqlite\nwarehouse = {root}/warehouse\nsqlite_path = {root}/catalog.db\n"
    if snapshot_retention_hours is not None:
        results += f"snapshot_retention_hours = {snapshot_retention_hours}\n"
    text = (
        f"; written by {written_by}\n{storage}\n{results}\n"
        f"[slack]\nwebhook_url = ${{{webhook_env}}}\n\n[check]\nthreshold_deg = {threshold_deg}\n\n"
        f"[capture]\nstabilize_time = {stabilize_time}\ntimeout = {timeout}\n"
        f"reference_stabilize_time = {reference_stabilize_time}\nworkdir = {root}/work\n"
    )
    # the day the site's checks begin: no "missing" partitions before it
    schedule = [f"start_date = {start_date}"]
    if max_concurrent_per_deployment is not None:
        schedule.append(f"max_concurrent_per_deployment = {max_concurrent_per_deployment}")
    text += "\n[schedule]\n" + "\n".join(schedule) + "\n"
    if alert_policy is not None:
        text += f"\n[alerts]\npolicy = {alert_policy}\n"
    return text


# ----------------------------------------------------------------------------- devices.yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CameraEndpoint(_Strict):
    """How to reach a camera: full URLs (direct), or a Kubernetes service and port (port-forward)."""

    base_url: str | None = None  # e.g. http://127.0.0.1:8001 ; snapshot/stream/ptz paths below
    snapshot_url: str | None = None
    stream_url: str | None = None
    service: str | None = None
    port: int | None = Field(default=None, gt=0, lt=65536)
    snapshot_path: str = "/snapshot.jpg"
    stream_path: str = "/stream.mjpg"
    ptz_path: str = "/ptz/absolute"
    # http: through the camera's own protocol (below); mqtt: a command on the deployment's
    # command topic (payload from mqtt_command_template); none: a fixed camera
    ptz: Literal["http", "mqtt", "none"] = "http"
    grab: Literal["snapshot", "stream"] = "snapshot"
    protocol: CameraProtocol = "http"
    username: str | None = None
    password: SecretStr | None = None  # write ${ENV_VAR}: read from the environment at load time
    onvif: OnvifOptions = OnvifOptions()
    vapix: VapixOptions = VapixOptions()
    isapi: IsapiOptions = IsapiOptions()
    mqtt_command_template: str | None = None  # e.g. '{"pan": $yaw, "tilt": $pitch, "zoom": $zoom}'

    _no_url_credentials = field_validator("base_url", "snapshot_url", "stream_url")(
        classmethod(lambda cls, v: reject_url_credentials(v))
    )

    @model_validator(mode="after")
    def _reachable(self) -> CameraEndpoint:
        if not (self.base_url or self.snapshot_url or self.stream_url or (self.service and self.port)):
            raise ValueError("camera needs base_url, snapshot_url, stream_url, or service and port")
        if self.protocol != "http" and not (self.base_url or (self.service and self.port)):
            raise ValueError(f"protocol {self.protocol} needs base_url (or service and port)")
        if self.password is not None and not self.username:
            raise ValueError("camera.password is set but camera.username is not")
        return self


class DeviceIntrinsics(_Strict):
    """Image size and focal length: hfov per zoom (interpolated in focal length) or fx/fy/cx/cy."""

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    hfov_by_zoom: dict[float, float] | None = None
    fx: float | None = Field(default=None, gt=0)
    fy: float | None = Field(default=None, gt=0)
    cx: float | None = None
    cy: float | None = None
    # a site's own lens calibration per zoom (OpenCV camera matrix + distortion), calmon_core.lens
    calibration: list[CalibrationAtZoom] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> DeviceIntrinsics:
        if not self.hfov_by_zoom and self.fx is None and not self.calibration:
            raise ValueError("intrinsics need hfov_by_zoom, fx or calibration")
        for zoom, hfov in (self.hfov_by_zoom or {}).items():
            if not (zoom > 0 and 0 < hfov < 180):
                raise ValueError(f"hfov_by_zoom {zoom}: {hfov} must be zoom > 0 and 0 < hfov < 180")
        return self

    def at_zoom(self, zoom: float) -> Intrinsics:
        if self.calibration:
            lens = calibration_at_zoom(self.calibration, zoom, self.width, self.height)
            return Intrinsics(
                width=self.width,
                height=self.height,
                fx=lens.fx,
                fy=lens.fy,
                cx=lens.cx,
                cy=lens.cy,
                distortion=[lens.k1, lens.k2, lens.p1, lens.p2],
            )
        if not self.hfov_by_zoom:
            return Intrinsics(width=self.width, height=self.height, fx=self.fx, fy=self.fy, cx=self.cx, cy=self.cy)
        from calmon_core.conventions import focal_from_hfov, hfov_from_focal

        points = sorted(self.hfov_by_zoom.items())
        zooms = [z for z, _ in points]
        focals = [math.log(focal_from_hfov(self.width, h)) for _, h in points]
        if len(points) == 1:
            # one calibrated zoom: focal length scales linearly with zoom
            focal = math.exp(focals[0]) * zoom / zooms[0]
        else:
            import numpy as np

            # log-focal interpolation, linear extrapolation in log focal at the ends
            if zoom <= zooms[0]:
                i = 0
            elif zoom >= zooms[-1]:
                i = len(zooms) - 2
            else:
                i = int(np.searchsorted(zooms, zoom)) - 1
            z0, z1 = zooms[i], zooms[i + 1]
            t = (zoom - z0) / (z1 - z0)
            focal = math.exp(focals[i] + t * (focals[i + 1] - focals[i]))
        return Intrinsics(width=self.width, height=self.height, hfov_deg=hfov_from_focal(self.width, focal))


class ReferenceGrid(_Strict):
    """The poses of a reference scan: every yaw x every pitch at one zoom."""

    yaws: list[float] = Field(min_length=1)
    pitches: list[float] = Field(min_length=1)
    zoom: float = Field(default=1.0, gt=0)
    # a short zoom sweep after the grid, a few poses per zoom (calmon_core.lens.zoom_sweep_poses):
    # the reference scan then calibrates the lens at those zooms too
    zooms: list[float] = []

    def poses(self) -> list[Pose]:
        grid = [Pose(yaw=y, pitch=p, roll=0.0, zoom=self.zoom) for p in self.pitches for y in self.yaws]
        sweep = [
            Pose(yaw=y, pitch=p, roll=0.0, zoom=z)
            for z in self.zooms
            for y, p in zoom_sweep_poses(self.yaws, self.pitches)
        ]
        return grid + sweep


class Device(_Strict):
    id: str
    enabled: bool = True
    camera: CameraEndpoint
    intrinsics: DeviceIntrinsics
    mode: Literal["passive", "active"] = "passive"
    active_ptz_stops: list[tuple[float, float, float]] = []
    stabilize_time: float | None = Field(default=None, ge=0)
    reference_grid: ReferenceGrid
    telemetry: TelemetryConfig | None = None  # overrides the deployment's telemetry section

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        try:
            return check_segment(value, "device id")
        except UnsafeNameError as exc:
            raise ValueError(str(exc)) from None


class MqttEndpoint(_Strict):
    host: str | None = "127.0.0.1"  # direct mode
    port: int = Field(default=1883, gt=0, lt=65536)
    service: str | None = None  # kubectl mode: port-forwarded service
    username: str | None = None
    password: SecretStr | None = None


class TelemetryFields(_Strict):
    """Names of the telemetry JSON keys at a site, mapped to calmon's names."""

    yaw: str = "yaw"
    pitch: str = "pitch"
    roll: str = "roll"
    zoom: str = "zoom"
    timestamp: str = "timestamp"


class Deployment(_Strict):
    name: str
    access: Literal["direct", "kubectl"] = "direct"
    kube_context: str | None = None
    kubeconfig: str | None = None
    namespace: str = "default"
    mqtt: MqttEndpoint = MqttEndpoint()
    topic_template: str = "calmon/{deployment}/{device}/telemetry"
    command_topic_template: str = "calmon/{deployment}/{device}/ptz"
    telemetry_fields: TelemetryFields = TelemetryFields()
    telemetry: TelemetryConfig = TelemetryConfig()
    devices: list[Device] = []

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        try:
            return check_segment(value, "deployment name")
        except UnsafeNameError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _kubectl_needs_context(self) -> Deployment:
        if self.access == "kubectl" and not self.kube_context:
            raise ValueError("access: kubectl needs kube_context")
        ids = [d.id for d in self.devices]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate device ids {dupes}")
        return self

    def topic(self, device_id: str) -> str:
        return self.topic_template.format(deployment=self.name, device=device_id)

    def command_topic(self, device_id: str) -> str:
        return self.command_topic_template.format(deployment=self.name, device=device_id)

    def telemetry_of(self, device: Device) -> TelemetryConfig:
        return device.telemetry or self.telemetry


class Fleet(_Strict):
    deployments: list[Deployment] = []

    @model_validator(mode="after")
    def _unique(self) -> Fleet:
        names = [d.name for d in self.deployments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate deployment names {dupes}")
        seen: dict[str, str] = {}
        for dep in self.deployments:
            for dev in dep.devices:
                if dev.id in seen:
                    raise ValueError(
                        f"device id {dev.id!r} is in deployments {seen[dev.id]!r} and {dep.name!r}; "
                        "device ids are partition keys and must be unique across the fleet"
                    )
                seen[dev.id] = dep.name
        return self

    def devices(self, enabled_only: bool = False) -> list[tuple[Deployment, Device]]:
        return [(dep, dev) for dep in self.deployments for dev in dep.devices if dev.enabled or not enabled_only]

    def deployment(self, name: str) -> Deployment | None:
        return next((d for d in self.deployments if d.name == name), None)

    def find(self, device_id: str) -> tuple[Deployment, Device]:
        for dep, dev in self.devices():
            if dev.id == device_id:
                return dep, dev
        raise KeyError(f"device {device_id!r} is not in devices.yaml")


def load_fleet(path: str | Path) -> Fleet:
    path = Path(path)
    if not path.is_file():
        example = path.with_name("devices.example.yaml")
        hint = f" (start from {example}, or let `calmon sim --write-devices` write one)" if example.is_file() else ""
        raise ConfigError([f"{path}: file not found{hint}"])
    raw, substituted = read_config_yaml(path)
    if raw is None:
        raise ConfigError([f"{path}: no devices: the file is empty (list them under 'deployments')"])
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: top level must be a mapping with 'deployments'"])
    try:
        fleet = Fleet.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_pydantic_problems(exc, str(path), substituted=substituted)) from exc
    if not fleet.devices():
        raise ConfigError([f"{path}: no devices in any deployment; there is nothing to monitor"])
    return fleet


class CalmonConfig(BaseModel):
    """Everything one calmon site needs: settings plus the fleet."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    directory: Path
    settings: Settings
    fleet: Fleet


def load_config(directory: str | Path = DEFAULT_CONFIG_DIR) -> CalmonConfig:
    """Load and validate a config folder, reporting every problem in both files at once."""
    directory = Path(directory)
    problems: list[str] = []
    settings, fleet = Settings(), Fleet()
    try:
        settings = load_settings(directory / SETTINGS_FILE)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        fleet = load_fleet(directory / DEVICES_FILE)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return CalmonConfig(directory=directory, settings=settings, fleet=fleet)
