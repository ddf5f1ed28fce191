import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from calmon_core.config import ConfigError, load_config, load_fleet, load_settings, parse_stops

REPO = Path(__file__).resolve().parent.parent
GOOD_DEVICE = """
      - id: {id}
        camera: {{base_url: "http://127.0.0.1:1"}}
        intrinsics: {{width: 640, height: 360, hfov_by_zoom: {{1.0: 60.0}}}}
        reference_grid: {{yaws: [0], pitches: [0]}}
"""


def write_devices(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(body)
    return path


def test_example_config_validates(tmp_path):
    shutil.copy(REPO / "configs" / "calibration_monitoring.ini", tmp_path)
    shutil.copy(REPO / "configs" / "devices.example.yaml", tmp_path / "devices.yaml")
    config = load_config(tmp_path)
    assert config.settings.storage.bucket == "camera-calibration-monitoring"
    assert config.settings.slack.channel == "calibration_monitoring"
    assert config.settings.check.threshold_deg == 0.5
    assert config.settings.capture.stabilize_time == 30
    dep, dev = config.fleet.find("cam-10")
    assert dep.access == "kubectl" and dep.kube_context == "city-north-prod"
    assert dev.intrinsics.at_zoom(1.0).matrix()[0, 0] == pytest.approx(1662.8)


def test_secrets_come_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.example.invalid/T000/B000/XXXX")
    shutil.copy(REPO / "configs" / "calibration_monitoring.ini", tmp_path)
    settings = load_settings(tmp_path / "calibration_monitoring.ini")
    assert settings.slack.webhook_url.get_secret_value().endswith("XXXX")
    assert "XXXX" not in repr(settings)  # SecretStr keeps it out of reprs and logs


def test_missing_settings_file_gives_embedded_defaults(tmp_path):
    settings = load_settings(tmp_path / "absent.ini")
    assert settings.results.catalog == "sqlite"
    assert settings.storage.backend == "local"


def test_hfov_interpolates_in_focal_length():
    fleet_yaml = """
deployments:
  - name: site
    devices:
      - id: cam
        camera: {base_url: "http://127.0.0.1:1"}
        intrinsics: {width: 1280, height: 720, hfov_by_zoom: {1.0: 60.0, 4.0: 15.0}}
        reference_grid: {yaws: [0], pitches: [0]}
"""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fleet = load_fleet(write_devices(Path(tmp), fleet_yaml))
    intr = fleet.find("cam")[1].intrinsics
    assert intr.at_zoom(1.0).hfov_deg == pytest.approx(60.0)
    assert intr.at_zoom(4.0).hfov_deg == pytest.approx(15.0)
    assert 15.0 < intr.at_zoom(2.0).hfov_deg < 60.0


def test_broken_devices_yaml_reports_every_problem_with_paths(tmp_path):
    body = (
        "deployments:\n  - name: site/one\n    devices:\n"
        "      - id: ../etc\n        camera: {}\n"
        "        intrinsics: {width: -1, height: 360}\n"
        "        reference_grid: {yaws: [], pitches: [0]}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_fleet(write_devices(tmp_path, body))
    text = str(err.value)
    assert "devices.yaml" in text
    assert "deployments[0].name" in text and "not a safe path segment" in text
    assert "deployments[0].devices[0].id" in text and "'../etc'" in text
    assert "deployments[0].devices[0].camera" in text
    assert "deployments[0].devices[0].intrinsics.width" in text
    assert "deployments[0].devices[0].reference_grid.yaws" in text
    assert len(err.value.problems) >= 5


@pytest.mark.parametrize("bad_id", ["../x", "a/b", "a|b", "", "..", "cam 1", "a,b"])
def test_unsafe_device_ids_refused(tmp_path, bad_id):
    body = "deployments:\n  - name: site\n    devices:" + GOOD_DEVICE.format(id=f'"{bad_id}"')
    with pytest.raises(ConfigError, match=r"devices\[0\]\.id"):
        load_fleet(write_devices(tmp_path, body))


def test_duplicate_device_ids_across_deployments_refused(tmp_path):
    body = (
        "deployments:\n  - name: a\n    devices:"
        + GOOD_DEVICE.format(id="cam")
        + "  - name: b\n    devices:"
        + GOOD_DEVICE.format(id="cam")
    )
    with pytest.raises(ConfigError, match="must be unique across the fleet"):
        load_fleet(write_devices(tmp_path, body))


def test_kubectl_access_needs_context(tmp_path):
    body = "deployments:\n  - name: site\n    access: kubectl\n    devices:" + GOOD_DEVICE.format(id="c")
    with pytest.raises(ConfigError, match="kube_context"):
        load_fleet(write_devices(tmp_path, body))


def test_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_fleet(write_devices(tmp_path, "deployments: [\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_fleet(write_devices(tmp_path, "- a\n- b\n"))


def test_broken_ini_reports_every_problem(tmp_path):
    ini = tmp_path / "calibration_monitoring.ini"
    ini.write_text(
        "[slack]\nthreshold_deg = -1\ncolour = red\n[results]\ncatalog = oracle\n"
        "[capture]\nactive_ptz_stops = 1,2\n[bogus]\nx = 1\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(ini)
    text = str(err.value)
    assert "slack.threshold_deg" in text
    assert "[slack] colour: unknown key" in text
    assert "results.catalog" in text
    assert "active_ptz_stops" in text and "pan,tilt,zoom" in text
    assert "[bogus]: unknown section" in text


def test_parse_stops():
    assert parse_stops("10,0,1; -20, 5.5, 2") == [(10, 0, 1), (-20, 5.5, 2)]
    with pytest.raises(ValueError):
        parse_stops("1,2,nan")


def test_validate_config_cli_exit_codes(tmp_path):
    (tmp_path / "devices.yaml").write_text("deployments:\n  - name: ok\n    devices:\n      - id: a/b\n")
    (tmp_path / "calibration_monitoring.ini").write_text("[slack]\nthreshold_deg = zero\n")
    proc = subprocess.run(
        [sys.executable, "-m", "calmon_cli", "validate-config", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "threshold_deg" in proc.stderr and "devices[0].id" in proc.stderr
    assert "devices[0].camera" in proc.stderr  # every problem at once, not just the first

    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(REPO / "configs" / "devices.example.yaml", good / "devices.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "calmon_cli", "validate-config", str(good)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 device(s)" in proc.stdout


def test_local_site_settings_load_and_keep_the_webhook_a_reference(tmp_path, monkeypatch):
    from calmon_core.config import local_site_settings

    monkeypatch.setenv("CALMON_SITE_HOOK", "https://hooks.slack.com/services/T0/B0/secret")
    text = local_site_settings(
        tmp_path,
        webhook_env="CALMON_SITE_HOOK",
        stabilize_time=5,
        timeout=40,
        s3_endpoint="http://127.0.0.1:9000",
        max_concurrent_per_deployment=3,
        snapshot_retention_hours=0.5,
    )
    assert "secret" not in text and "${CALMON_SITE_HOOK}" in text
    (tmp_path / "calibration_monitoring.ini").write_text(text)
    settings = load_settings(tmp_path / "calibration_monitoring.ini")
    assert settings.storage.backend == "s3" and settings.aws.endpoint_url == "http://127.0.0.1:9000"
    assert settings.results.sqlite_path == f"{tmp_path}/catalog.db"
    assert settings.capture.workdir == f"{tmp_path}/work"
    assert (settings.capture.stabilize_time, settings.capture.timeout) == (5, 40)
    assert settings.schedule.max_concurrent_per_deployment == 3
    assert settings.results.snapshot_retention_hours == 0.5
    assert settings.slack.webhook_url.get_secret_value().endswith("/secret")
    local = local_site_settings(tmp_path)
    (tmp_path / "calibration_monitoring.ini").write_text(local)
    assert load_settings(tmp_path / "calibration_monitoring.ini").storage.local_root == f"{tmp_path}/object-store"


def test_threshold_is_read_from_check_and_still_from_slack(tmp_path):
    ini = tmp_path / "calibration_monitoring.ini"
    ini.write_text("[check]\nthreshold_deg = 0.3\n")
    assert load_settings(ini).check.threshold_deg == 0.3
    ini.write_text("[slack]\nthreshold_deg = 0.7\n")
    with pytest.warns(DeprecationWarning, match=r"\[slack\] threshold_deg is deprecated"):
        assert load_settings(ini).check.threshold_deg == 0.7
    ini.write_text("[slack]\nthreshold_deg = 0.7\n[check]\nthreshold_deg = 0.2\n")
    with pytest.warns(DeprecationWarning):
        assert load_settings(ini).check.threshold_deg == 0.2


def test_keys_calmon_does_not_read_still_load_with_a_note(tmp_path):
    ini = tmp_path / "calibration_monitoring.ini"
    ini.write_text("[results]\nathena_workgroup = primary\n[capture]\ntelemetry_rate_hz = 10\nstabilize_time = 12\n")
    with pytest.warns(DeprecationWarning, match=r"\[results\] athena_workgroup is not used by calmon"):
        settings = load_settings(ini)
    assert settings.capture.stabilize_time == 12
