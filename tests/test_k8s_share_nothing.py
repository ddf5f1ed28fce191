"""Run pods share nothing local: every run of a cloud-configured site, launched by K8sRunLauncher,
is executed the way a kubelet would execute its Job (the container's own args and environment,
Secrets and ConfigMaps as files and variables) in a fresh, empty root of its own, as a separate
process. What one run leaves for another must travel through Postgres (the instance), S3 and Glue.

Real parts: PostgreSQL, moto's S3 and Glue over HTTP, the simulated fleet with a real MQTT broker,
a local Slack receiver, `dagster api grpc` as the user-code deployment, and a local HTTP server for
the Kubernetes API's Job creation. The reference scans, a check cycle and a reprocess backfill each
run in their own pods. Rows, files and Slack messages must be those of the single-process tests,
and no run may write outside its own root.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from calmon_core.config import LOCAL_SITE_START_DATE, SETTINGS_FILE, AwsSettings, ResultsSettings
from calmon_core.layout import device_prefix, reference_scan_prefix
from calmon_core.models import CheckStatus
from calmon_sim.fleet import SimFleet
from calmon_sim.fleet_spec import FleetSpec
from calmon_sim.slack_receiver import SlackReceiver
from resources.results_table import ResultsTable
from tests.servers import TEST_AWS_ENV
from tests.sim_site import device
from tests.test_k8s_deploy import (
    REPO,
    apply_sensor,
    code_location,
    dockerfile_env,
    load_values,
    open_instance,
    running_user_code,
    schedule_runs,
    user_deployment,
    write_chart_instance,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

BUCKET = "camera-calibration-monitoring"  # the bucket the shipped settings and the values name
TICK = datetime.datetime(2026, 3, 1, 10, 5, tzinfo=datetime.UTC)
TRUE_OFFSETS = {"cam-ok": (0.0, 0.0, 0.0), "cam-bad": (0.8, -0.3, 0.1)}


class Kubelet:
    """Runs a Job's container as a local process, as a kubelet would: the container's args, its
    env and envFrom resolved from the given Secrets and ConfigMaps, its volumes written as files.
    Each pod gets an empty folder as its root: absolute paths in the environment (the image's
    DAGSTER_HOME, the config folder, the kubeconfig) point inside it, and so do HOME, the working
    directory (the image's WORKDIR) and TMPDIR."""

    def __init__(self, root: Path, secrets: dict[str, dict[str, str]], config_maps: dict[str, dict[str, str]]):
        self.root = root
        self.secrets = secrets
        self.config_maps = config_maps
        self.pods: list[Path] = []

    def _env_value(self, item: dict) -> str:
        if "value" in item:
            return item["value"]
        ref = item["valueFrom"]["secretKeyRef"]
        return self.secrets[ref["name"]][ref["key"]]  # KeyError: a pod that would not start

    def run(self, job: dict, image_env: dict[str, str], node_env: dict[str, str]) -> subprocess.CompletedProcess:
        pod_root = self.root / job["metadata"]["name"]
        pod_root.mkdir(parents=True)
        self.pods.append(pod_root)
        spec = job["spec"]["template"]["spec"]
        (container,) = spec["containers"]

        env = dict(image_env)
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                env.update(self.secrets[source["secretRef"]["name"]])
            else:
                env.update(self.config_maps[source["configMapRef"]["name"]])
        for item in container.get("env", []):
            env[item["name"]] = self._env_value(item)
        env = {key: str(pod_root) + value if value.startswith("/") else value for key, value in env.items()}

        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            files = (
                self.config_maps[volume["configMap"]["name"]]
                if "configMap" in volume
                else self.secrets[volume["secret"]["secretName"]]
            )
            folder = pod_root / mount["mountPath"].lstrip("/")
            folder.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (folder / name).write_text(text)

        home = pod_root / "home" / "calmon"
        home.mkdir(parents=True)
        (pod_root / "tmp").mkdir()
        env.update(HOME=str(home), TMPDIR=str(pod_root / "tmp"), **node_env)
        return subprocess.run(container["args"], cwd=home, env=env, capture_output=True, text=True, timeout=600)


def files_under(folder: Path, skip: Path | None = None) -> set[str]:
    return {
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and not (skip and path.is_relative_to(skip))
    }


def untracked_in_repo() -> set[str]:
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True, text=True
    ).stdout
    return {line[3:] for line in out.splitlines() if line.startswith("??")}


def cloud_settings(shipped: str) -> str:
    """The shipped calibration_monitoring.ini (its cloud backends come from the values' variables),
    with capture timings a test can wait for and a message per check (the pods are under test here,
    not the alert policy: one check per device gives no state change to post)."""
    text = re.sub(r"(?m)^stabilize_time = .*$", "stabilize_time = 1.0", shipped)
    text = re.sub(r"(?m)^policy = .*$", "policy = every_check", text)
    text = re.sub(r"(?m)^timeout = .*$", "timeout = 20\nreference_stabilize_time = 0.5", text)
    # a site that says when its checks began (TICK is after it)
    return re.sub(r"(?m)^start_date =.*$", f"start_date = {LOCAL_SITE_START_DATE}", text)


@pytest.fixture
def kubernetes_jobs(httpserver):
    """The Kubernetes API's Job creation on a local HTTP server; returns the Jobs created, in order."""
    from werkzeug import Response

    created: list[dict] = []

    def create_job(request):
        body = json.loads(request.get_data())
        created.append(body)
        return Response(json.dumps(body), status=201, content_type="application/json")

    httpserver.expect_request(re.compile(r"/apis/batch/v1/namespaces/[^/]+/jobs"), method="POST").respond_with_handler(
        create_job
    )
    return httpserver, created


def test_runs_in_fresh_pods_share_only_postgres_s3_and_glue(
    tmp_path, postgres, moto_endpoint, shared_broker, kubernetes_jobs, monkeypatch
):
    values = load_values()
    deployment = user_deployment(values)
    httpserver, jobs = kubernetes_jobs
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)

    # the site: a simulated fleet, its devices.yaml and the shipped settings in the ConfigMap
    spec = FleetSpec.model_validate(
        {
            "deployments": [
                {"name": "harbor", "devices": [device("cam-ok", 11, yaw=5.0)]},
                {"name": "city", "devices": [device("cam-bad", 12, yaw=10.0, offset=TRUE_OFFSETS["cam-bad"])]},
            ]
        }
    )
    fleet = SimFleet(spec, broker_host=shared_broker.host, broker_port=shared_broker.port).start()
    slack = SlackReceiver().start()
    config_dir = tmp_path / "calmon-config"
    config_dir.mkdir()
    fleet.write_devices_yaml(config_dir / "devices.yaml")
    (config_dir / SETTINGS_FILE).write_text(cloud_settings((REPO / "configs" / SETTINGS_FILE).read_text()))

    # The pods' AWS credentials stand in for IRSA's; the endpoint is moto's (in the cluster: AWS).
    node_env = {
        **TEST_AWS_ENV,
        "CALMON_S3_ENDPOINT_URL": moto_endpoint,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "PYTHONPATH": str(REPO),  # the image's installed calmon
    }
    secrets = {
        "calmon-slack": {"SLACK_WEBHOOK_URL": slack.url},
        "calmon-site-credentials": {},
        "calmon-postgresql": {"postgresql-password": postgres.password},
        "calmon-kubeconfig": {"config": ""},
    }
    config_maps = {
        "calmon-config": {path.name: path.read_text() for path in config_dir.iterdir()},
        f"calmon-dagster-user-deployments-{deployment['name']}-user-env": {},
    }
    kubelet = Kubelet(tmp_path / "pods", secrets, config_maps)
    home = tmp_path / "dagster_home"
    instance_yaml = write_chart_instance(home, values, postgres, httpserver.url_for("/").rstrip("/"))
    instance_yaml["compute_logs"]["config"]["endpoint_url"] = moto_endpoint
    (home / "dagster.yaml").write_text(__import__("yaml").safe_dump(instance_yaml))
    for key, value in {**TEST_AWS_ENV, "DAGSTER_PG_PASSWORD": postgres.password}.items():
        monkeypatch.setenv(key, value)
    server_env = {
        **TEST_AWS_ENV,
        "DAGSTER_PG_PASSWORD": postgres.password,
        "SLACK_WEBHOOK_URL": slack.url,
        "CALMON_S3_ENDPOINT_URL": moto_endpoint,
    }
    image_env = dockerfile_env()

    def run_pods(instance, workspace, runs) -> None:
        """Launch the runs through K8sRunLauncher and execute each Job in its own fresh pod."""
        before_outside = files_under(tmp_path, skip=tmp_path / "pods")
        before_repo = untracked_in_repo()
        for run in runs:
            instance.launch_run(run.run_id, workspace)
            result = kubelet.run(jobs[-1], image_env, node_env)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            finished = instance.get_run_by_id(run.run_id)
            assert finished.is_success, (run.tags, result.stderr[-3000:])
        # nothing written outside the pods' own roots: not beside the instance, not in the repo
        assert files_under(tmp_path, skip=tmp_path / "pods") == before_outside
        assert untracked_in_repo() == before_repo

    try:
        with (
            running_user_code(tmp_path / "server", config_dir, server_env) as port,
            open_instance(home) as instance,
            code_location(instance, port) as (workspace, location, repository),
        ):
            apply_sensor(instance, location, repository, "sync_devices")

            # 1. reference scans, on calibrated cameras, one pod per device
            reference_job = repository.get_full_job("reference_scan_job")
            with fleet.calibrated():
                run_pods(
                    instance,
                    workspace,
                    [partition_run(instance, location, repository, reference_job, d) for d in TRUE_OFFSETS],
                )

            # 2. the schedule's check cycle
            checks = schedule_runs(instance, location, repository, TICK)
            assert len(checks) == 2  # one run per deployment
            run_pods(instance, workspace, checks)
            results = ResultsTable(
                ResultsSettings(catalog="glue", warehouse=f"s3://{BUCKET}/iceberg/"),
                AwsSettings(endpoint_url=moto_endpoint),
            )
            time_key = checks[0].tags["dagster/partition/time"]
            rows = {d: results.read(d, time_key) for d in TRUE_OFFSETS}
            for device_id, row in rows.items():
                assert row is not None and row.success, (device_id, row and row.failure_log)
                for axis, truth in zip(("yaw", "pitch", "roll"), TRUE_OFFSETS[device_id], strict=True):
                    assert getattr(row, f"{axis}_offset") == pytest.approx(truth, abs=0.05), (device_id, axis)
                assert row.files_location.startswith(f"s3://{BUCKET}/")
            assert rows["cam-ok"].status == CheckStatus.ok and rows["cam-bad"].status == CheckStatus.breach
            s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
            assert f"{reference_scan_prefix('city', 'cam-bad')}/manifest.json" in keys
            assert any(
                k.startswith(f"{device_prefix('city', 'cam-bad')}/query_scan/") and k.endswith("manifest.json")
                for k in keys
            )

            # 3. Slack, from the daemon's tick of the slack_alerts sensor
            apply_sensor(instance, location, repository, "slack_alerts")
            texts = slack.texts()
            assert len(texts) == 2
            assert any("🚨" in t and "cam-bad" in t for t in texts) and any("✅" in t and "cam-ok" in t for t in texts)

            # 4. a reprocess backfill in fresh pods: no camera, the capture comes from the object store
            reprocess_job = repository.get_full_job("reprocess_offsets")
            backfill = [
                partition_run(
                    instance, location, repository, reprocess_job, run.tags["dagster/partition"], backfill="reprocess-1"
                )
                for run in checks
            ]
            fleet.stop()
            run_pods(instance, workspace, backfill)
            again = {d: results.read(d, time_key) for d in TRUE_OFFSETS}
            assert len([r for r in results.all_rows() if r.check_partition == time_key]) == 2  # replaced, not added
            for device_id in TRUE_OFFSETS:
                assert again[device_id].success
                assert again[device_id].yaw_offset == pytest.approx(rows[device_id].yaw_offset, abs=1e-6)
            apply_sensor(instance, location, repository, "slack_alerts")
            assert slack.texts() == texts  # a backfill alerts nobody again
    finally:
        fleet.stop()
        slack.stop()
    # a pod per reference scan, per deployment's check run and per deployment's backfill run
    assert len(kubelet.pods) == 6 and all(files_under(pod) for pod in kubelet.pods)


def partition_run(instance, location, repository, job, partition_key: str, backfill: str | None = None):
    """A run of `job` for one partition, created as the daemon creates a backfill's runs."""
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._core.storage.tags import BACKFILL_ID_TAG, PARTITION_NAME_TAG

    tags = {**job.run_tags, PARTITION_NAME_TAG: partition_key}
    if "|" in partition_key:
        deployment, time_key = partition_key.split("|")
        tags.update({f"{PARTITION_NAME_TAG}/deployment": deployment, f"{PARTITION_NAME_TAG}/time": time_key})
    if backfill:
        tags[BACKFILL_ID_TAG] = backfill
    plan = location.get_execution_plan(job, {}, step_keys_to_execute=None, known_state=None)
    return instance.create_run(
        job_name=job.name,
        run_id=None,
        run_config={},
        resolved_op_selection=None,
        step_keys_to_execute=None,
        op_selection=None,
        status=DagsterRunStatus.NOT_STARTED,
        root_run_id=None,
        parent_run_id=None,
        tags=tags,
        job_snapshot=job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=job.parent_job_snapshot,
        remote_job_origin=job.get_remote_origin(),
        job_code_origin=job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )
