"""Config loading as an attacker or a careless user would feed it: env values, secrets, sizes, emptiness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from calmon_core.config import MAX_CONFIG_BYTES, ConfigError, load_fleet, load_settings, parse_stops

REPO = Path(__file__).resolve().parent.parent
DEVICE = """
      - id: cam-1
        camera: {base_url: "http://127.0.0.1:1"}
        intrinsics: {width: 640, height: 360, hfov_by_zoom: {1.0: 60.0}}
        reference_grid: {yaws: [0], pitches: [0]}
"""


def devices_yaml(tmp_path: Path, mqtt: str) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(f"deployments:\n  - name: site\n    mqtt: {mqtt}\n    devices:{DEVICE}")
    return path


def test_an_env_value_cannot_rewrite_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("MQTT_PASSWORD", "x, host: attacker.example")
    fleet = load_fleet(devices_yaml(tmp_path, "{host: broker.site, password: ${MQTT_PASSWORD}}"))
    mqtt = fleet.deployments[0].mqtt
    assert mqtt.host == "broker.site"
    assert mqtt.password.get_secret_value() == "x, host: attacker.example"


@pytest.mark.parametrize("secret", ["p: w'\"d", "{[", "123456", "null", "#hash", "a\nb: c"])
def test_any_env_value_is_taken_verbatim_as_a_string(tmp_path, monkeypatch, secret):
    monkeypatch.setenv("MQTT_PASSWORD", secret)
    fleet = load_fleet(devices_yaml(tmp_path, "\n      host: broker.site\n      password: ${MQTT_PASSWORD}"))
    assert fleet.deployments[0].mqtt.password.get_secret_value() == secret
    assert fleet.deployments[0].mqtt.host == "broker.site"


def test_env_default_and_embedded_reference_still_work(tmp_path, monkeypatch):
    monkeypatch.setenv("SITE", "north")
    monkeypatch.delenv("MQTT_PORT", raising=False)
    fleet = load_fleet(devices_yaml(tmp_path, "{host: 'broker.${SITE}.example', port: ${MQTT_PORT:-1884}}"))
    assert fleet.deployments[0].mqtt.host == "broker.north.example"
    assert fleet.deployments[0].mqtt.port == 1884


def test_a_mistyped_key_next_to_a_numeric_password_does_not_print_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MQTT_PASSWORD", "98765432")
    path = devices_yaml(tmp_path, "{host: broker.site, pasword: ${MQTT_PASSWORD}}")
    with pytest.raises(ConfigError) as info:
        load_fleet(path)
    text = str(info.value)
    assert "pasword" in text and str(path) in text
    assert "98765432" not in text


def test_a_literal_secret_in_a_bad_place_is_not_printed(tmp_path):
    path = devices_yaml(tmp_path, "{host: broker.site, password: [hunter2secret]}")
    with pytest.raises(ConfigError) as info:
        load_fleet(path)
    assert "mqtt.password" in str(info.value) and "hunter2secret" not in str(info.value)


def test_an_env_value_in_a_bad_setting_is_named_by_its_variable_not_printed(tmp_path, monkeypatch):
    monkeypatch.setenv("CALMON_THRESHOLD", "tok-3141592653")
    ini = tmp_path / "calibration_monitoring.ini"
    ini.write_text("[slack]\nthreshold_deg = ${CALMON_THRESHOLD}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(ini)
    text = str(info.value)
    assert "slack.threshold_deg" in text and "CALMON_THRESHOLD" in text
    assert "tok-3141592653" not in text


@pytest.mark.parametrize("name", ["devices.yaml", "calibration_monitoring.ini"])
def test_an_oversized_config_file_is_refused_before_parsing(tmp_path, name):
    path = tmp_path / name
    with path.open("wb") as f:
        f.write(b"# padding\n")
        f.truncate(MAX_CONFIG_BYTES + 1)  # sparse: the test itself stays cheap
    loader = load_fleet if name.endswith(".yaml") else load_settings
    with pytest.raises(ConfigError) as info:
        loader(path)
    assert str(path) in str(info.value) and "larger than" in str(info.value)


@pytest.mark.parametrize("body", ["", "\n# nothing here\n", "deployments: []\n", "deployments:\n  - name: d\n"])
def test_an_empty_devices_yaml_is_an_error(tmp_path, body):
    path = tmp_path / "devices.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_fleet(path)
    assert str(path) in str(info.value) and "no devices" in str(info.value)


def test_validate_config_of_an_empty_devices_yaml_exits_non_zero(tmp_path):
    (tmp_path / "devices.yaml").write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "calmon_cli", "validate-config", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "no devices" in proc.stderr and "Traceback" not in proc.stderr


def test_every_bad_active_ptz_stop_is_reported():
    with pytest.raises(ValueError) as info:
        parse_stops("10,0,1; 1,2; 5,5,5; 1,x,1; 3,3,inf")
    text = str(info.value)
    assert "'1,2'" in text and "'1,x,1'" in text and "'3,3,inf'" in text and "5,5,5" not in text


def test_every_bad_active_ptz_stop_in_the_ini_is_reported(tmp_path):
    ini = tmp_path / "calibration_monitoring.ini"
    ini.write_text("[capture]\nactive_ptz_stops = 1,2; 3,4,5; 6,seven,8\n")
    with pytest.raises(ConfigError) as info:
        load_settings(ini)
    assert "'1,2'" in str(info.value) and "'6,seven,8'" in str(info.value)


def test_a_yaml_alias_bomb_is_refused_naming_the_file(tmp_path):
    # nine levels of nine aliases: 387 million strings once expanded, 800 bytes on disk
    lines = ['a0: &a0 ["lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines += ["deployments:", "  - name: d", "    devices: *a9"]
    path = tmp_path / "devices.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_fleet(path)
    assert str(path) in str(info.value) and "aliases expand" in str(info.value)


def test_yaml_anchors_and_merge_keys_still_work(tmp_path):
    path = tmp_path / "devices.yaml"
    path.write_text(
        "deployments:\n"
        "  - name: d\n"
        "    access: direct\n"
        "    mqtt: {host: 127.0.0.1, port: 18830}\n"
        "    devices:\n"
        "      - &cam\n"
        "        id: cam-1\n"
        "        camera: {base_url: 'http://127.0.0.1:18101', ptz: http}\n"
        "        intrinsics: {width: 1280, height: 720, hfov_by_zoom: {1.0: 60.0}}\n"
        "        reference_grid: {yaws: [-30, 0, 30], pitches: [0], zoom: 1.0}\n"
        "      - {<<: *cam, id: cam-2}\n"
    )
    fleet = load_fleet(path)
    assert [d.id for d in fleet.deployments[0].devices] == ["cam-1", "cam-2"]
    assert fleet.deployments[0].devices[1].intrinsics.width == 1280
