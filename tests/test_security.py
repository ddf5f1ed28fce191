"""Secrets stay secret, servers stay on loopback, no shell anywhere.

A whole cycle runs with planted secrets (a webhook URL with a unique token, unique AWS credentials,
a kubeconfig holding a unique token, an MQTT password, camera passwords for ONVIF, ISAPI behind a
port-forward and VAPIX configured wrong), through the error paths too (S3 500s, Slack down, a
port-forward to a service that does not exist, a camera refusing the credentials), and then
everything calmon and Dagster wrote or sent is searched for them.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import uuid
from pathlib import Path

import boto3
import dagster as dg
import pytest
import yaml

from calmon_core.models import CheckStatus
from tests.servers import FlakyProxy, ScriptedWebhook, moto_server
from tests.sim_site import device, start_site, stop_site

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
BUCKET = "camera-calibration-monitoring"
TIME_KEY = "2026-11-20-08:00"


def _token(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


SECRETS = {
    "webhook token": _token("whk"),
    "AWS access key id": "AKIA" + uuid.uuid4().hex[:16].upper(),
    "AWS secret access key": _token("awssecret"),
    "kubeconfig token": _token("kubetoken"),
    "MQTT password": _token("mqttpw"),
    "ONVIF camera password": _token("onvifpw"),
    "ISAPI camera password": _token("isapipw"),
    "VAPIX camera password": _token("vapixpw"),
    "wrong VAPIX camera password": _token("wrongpw"),
}


def kubeconfig(token: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake-cluster",
            "clusters": [{"name": "fake", "cluster": {"server": "https://127.0.0.1:6443"}}],
            "users": [{"name": "calmon", "user": {"token": token}}],
            "contexts": [{"name": "fake-cluster", "context": {"cluster": "fake", "user": "calmon"}}],
        }
    )


@pytest.fixture(scope="module")
def secure_site(tmp_path_factory, shared_broker):
    """One direct device (cam-d) and two behind kubectl (cam-k, and cam-gone whose service does not
    exist), S3 through a proxy that can fail, Slack through a scripted webhook."""
    mp = pytest.MonkeyPatch()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE"):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", SECRETS["AWS access key id"])
    mp.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["AWS secret access key"])
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with moto_server() as endpoint, FlakyProxy(endpoint, failures=0) as proxy:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        deployments = [
            {
                "name": "harbor",
                "devices": [
                    device(
                        "cam-d",
                        31,
                        yaw=5.0,
                        offset=(0.7, 0.0, 0.0),
                        protocol="onvif",
                        username="calmon",
                        password=SECRETS["ONVIF camera password"],
                    ),
                    device(
                        "cam-wrong", 33, protocol="vapix", username="calmon", password=SECRETS["VAPIX camera password"]
                    ),
                ],
            },
            {
                "name": "city",
                "devices": [
                    device(
                        "cam-k",
                        32,
                        yaw=0.0,
                        offset=(0.0, 0.2, 0.0),
                        protocol="isapi",
                        username="admin",
                        password=SECRETS["ISAPI camera password"],
                    )
                ],
            },
        ]
        site = start_site(tmp_path_factory.mktemp("security"), shared_broker, deployments, proxy.url, mp)
        hook = ScriptedWebhook()
        host, port = hook._server.server_address[:2]
        token = SECRETS["webhook token"]
        mp.setenv("CALMON_TEST_WEBHOOK", f"http://{host}:{port}/services/T{token[:9]}/B{token[9:18]}/{token}")

        kube = tmp_path_factory.mktemp("kube")  # outside the site: only the token's own file holds it
        (kube / "config").write_text(kubeconfig(SECRETS["kubeconfig token"]))
        mp.setenv("PATH", f"{REPO / 'tests' / 'fake_kubectl'}{os.pathsep}{os.environ.get('PATH', '')}")
        mp.setenv("FAKE_KUBECTL_CONTEXTS", "fake-cluster")
        mp.setenv("FAKE_KUBECTL_LOG", str(kube / "kubectl-calls.jsonl"))
        mp.setenv(
            "FAKE_KUBECTL_SERVICES",
            json.dumps(
                {
                    "cameras/cam-k:80": site.fleet.cameras["cam-k"].port,
                    "cameras/mosquitto:1883": shared_broker.port,
                }
            ),
        )
        mp.setenv("CALMON_TEST_MQTT_PASSWORD", SECRETS["MQTT password"])
        mp.setenv("CALMON_TEST_WRONG_CAMERA_PASSWORD", SECRETS["wrong VAPIX camera password"])
        doc = site.fleet.devices_config()
        doc["deployments"][0]["devices"][1]["camera"]["password"] = "${CALMON_TEST_WRONG_CAMERA_PASSWORD}"
        city = doc["deployments"][1]
        cam_k = city["devices"][0]
        cam_k["camera"] = {key: value for key, value in cam_k["camera"].items() if key != "base_url"}
        cam_k["camera"].update(service="cam-k", port=80)
        cam_gone = {**cam_k, "id": "cam-gone", "camera": {"service": "cam-gone", "port": 80, "ptz": "http"}}
        cam_gone.pop("telemetry", None)
        city.update(
            access="kubectl",
            kube_context="fake-cluster",
            kubeconfig=str(kube / "config"),
            namespace="cameras",
            devices=[cam_k, cam_gone],
            mqtt={
                "service": "mosquitto",
                "port": 1883,
                "username": "calmon",
                "password": "${CALMON_TEST_MQTT_PASSWORD}",
            },
        )
        (site.config_dir / "devices.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        try:
            yield site, hook, proxy, endpoint, kube
        finally:
            hook.stop()
            stop_site(site)
    mp.undo()


def found_in(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


def test_no_secret_anywhere_after_a_cycle(secure_site, capfd, caplog):
    site, hook, proxy, endpoint, kube = secure_site
    caplog.set_level(logging.INFO)
    platform = site.platform()
    with site.fleet.calibrated():
        references = platform.collect_references()
    assert {r.device_id: r.succeeded for r in references} == {
        "cam-d": True,
        "cam-k": True,
        "cam-gone": False,
        "cam-wrong": False,
    }
    wrong = next(r for r in references if r.device_id == "cam-wrong")
    assert "device cam-wrong: camera refused the credentials (HTTP 401" in wrong.error

    hook.script = [(500, {})] * 4  # Slack is down for the first tick's first message
    proxy.failures = proxy.failed + 3  # and S3 answers 500 three times
    runs = platform.run_check_cycle(TIME_KEY)
    assert all(r.succeeded for r in runs)
    first = platform.send_alerts()
    second = platform.send_alerts()
    assert first == [] and len(second) == 4
    table = platform.resources["results_table"].get_client()
    rows = {r.device_id: r for r in table.all_rows()}
    assert rows["cam-d"].status == CheckStatus.breach and rows["cam-k"].success
    assert rows["cam-gone"].status == CheckStatus.failed
    assert rows["cam-wrong"].status == CheckStatus.failed
    assert "device cam-wrong: camera refused the credentials (HTTP 401" in rows["cam-wrong"].failure_log
    assert "kubeconfig" in rows["cam-gone"].failure_log  # the error names the file, not its content

    # the secrets were really in use: the webhook's path, the kubeconfig flag, the AWS chain, MQTT
    assert all(r.path.endswith(SECRETS["webhook token"]) for r in hook.requests) and len(hook.requests) == 8
    calls = [json.loads(line) for line in (kube / "kubectl-calls.jsonl").read_text().splitlines()]
    assert calls and all(["--kubeconfig", str(kube / "config")] == c[2:4] for c in calls)
    credentials = boto3.Session().get_credentials()
    assert (credentials.access_key, credentials.secret_key) == (
        SECRETS["AWS access key id"],
        SECRETS["AWS secret access key"],
    )
    assert platform.config.fleet.find("cam-k")[0].mqtt.password.get_secret_value() == SECRETS["MQTT password"]
    assert proxy.failed >= 3

    leaks: dict[str, list[str]] = {}

    def check(where: str, text: str) -> None:
        if found := found_in(text):
            leaks.setdefault(where, []).extend(found)

    check("control", (kube / "config").read_text() + hook.requests[0].path)
    assert leaks.pop("control") == ["webhook token", "kubeconfig token"]  # the search does find them

    instance = platform.instance
    run_ids = [run.run_id for run in instance.get_runs()]
    # a run per reference scan, a check run per deployment
    assert len(run_ids) == len(references) + len({run.run_id for run in runs})
    for run_id in run_ids:
        check(f"run {run_id}", dg.serialize_value(instance.get_run_by_id(run_id)))
        entries = instance.all_logs(run_id)
        assert entries
        for entry in entries:
            check(f"event log of run {run_id}", dg.serialize_value(entry))
        for record in instance.get_records_for_run(run_id).records:
            check(f"event record of run {run_id}", dg.serialize_value(record.event_log_entry))
    for key in ("reference_scan", "query_capture", "calibration_offsets"):
        records = instance.fetch_materializations(dg.AssetKey(key), limit=100).records
        assert records
        for record in records:
            check(f"{key} materialization", dg.serialize_value(record.asset_materialization))
    captured = capfd.readouterr()
    assert "dagster - WARNING - calibration_check" in captured.err  # the runs' console logs were captured
    check("stdout", captured.out)
    check("stderr", captured.err)
    check("python logging", caplog.text)
    for row in table.all_rows():
        check(f"results row {row.device_id}", row.model_dump_json())
    for text in hook.texts():
        check("Slack text", text)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    ]
    assert any(k.endswith("manifest.json") for k in keys)
    for key in keys:
        check(f"object {key}", key + s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode("latin-1"))
    # every file calmon and Dagster wrote: instance (event logs, compute logs), catalog, warehouse,
    # work folders and caches, config folder; and kubectl's argv log
    files = [p for p in site.root.rglob("*") if p.is_file()] + [kube / "kubectl-calls.jsonl"]
    assert any(p.suffix == ".db" for p in files)
    for path in files:
        check(str(path), path.read_bytes().decode("latin-1"))
    assert leaks == {}


def test_servers_bind_to_loopback_by_default(shared_broker):
    from calmon_cli.main import build_parser
    from calmon_sim.broker import EmbeddedBroker
    from calmon_sim.fleet import SimFleet
    from calmon_sim.fleet_spec import FleetSpec
    from calmon_sim.slack_receiver import SlackReceiver

    fleet = SimFleet(
        FleetSpec.model_validate({"deployments": [{"name": "harbor", "devices": [device("cam-x", 41)]}]}),
        broker_port=shared_broker.port,
    )
    receiver = SlackReceiver().start()
    webhook = ScriptedWebhook()
    try:
        addresses = {
            "sim camera": fleet.cameras["cam-x"]._http._server.server_address[0],
            "sim Slack receiver": receiver._server.server_address[0],
            "scripted webhook": webhook._server.server_address[0],
        }
    finally:
        fleet.stop()
        receiver.stop()
        webhook.stop()
    assert addresses == dict.fromkeys(addresses, "127.0.0.1")
    assert EmbeddedBroker().host == "127.0.0.1"
    assert build_parser().parse_args(["sim", "--fleet", "fleet.yaml"]).host == "127.0.0.1"


SHELL_CALLS = {
    ("os", "system"),
    ("os", "popen"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
    ("asyncio", "create_subprocess_shell"),
}


def test_no_subprocess_goes_through_a_shell():
    findings, subprocess_calls = [], 0
    for package in ("calmon_core", "resources", "calmon_assets", "calmon_cli", "calmon_sim"):
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                func = node.func
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                    if (func.value.id, func.attr) in SHELL_CALLS:
                        findings.append(f"{where}: {func.value.id}.{func.attr}")
                    subprocess_calls += func.value.id == "subprocess"
                for keyword in node.keywords:
                    shell_off = isinstance(keyword.value, ast.Constant) and not keyword.value.value
                    if keyword.arg == "shell" and not shell_off:
                        findings.append(f"{where}: shell={ast.unparse(keyword.value)}")
    assert subprocess_calls >= 2  # the scan sees kubectl's subprocess.run and Popen
    assert findings == []
