"""The Kubernetes deployment without a cluster: deploy/helm/values.yaml, read the way Dagster's Helm
chart (1.13.27) reads it, drives the real pieces it configures.

The user-code deployment is started as the chart starts it (`dagster api grpc` with the chart's
environment: DAGSTER_CURRENT_IMAGE and the container context), the instance comes from the
dagster.yaml the chart renders (K8sRunLauncher, QueuedRunCoordinator, storage on a real
PostgreSQL server), the schedule's run for one device is created as the daemon creates it, and
K8sRunLauncher launches it against a local HTTP server standing in for the Kubernetes API: the Job
it POSTs is checked against the values file and the Dockerfile, so none of the three can drift.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from werkzeug import Request, Response

from calmon_core.config import LOCAL_SITE_START_DATE, SETTINGS_FILE, load_settings

REPO = Path(__file__).resolve().parent.parent
VALUES_FILE = REPO / "deploy" / "helm" / "values.yaml"
DOCKERFILE = REPO / "Dockerfile"
RELEASE = "calmon"
NAMESPACE = "calmon"
CHART_DAGSTER_HOME = "/opt/dagster/dagster_home"  # the chart's global.dagsterHome default
DEPLOYMENT_TAG = "calmon/deployment"


def load_values() -> dict:
    return yaml.safe_load(VALUES_FILE.read_text())


def user_deployment(values: dict) -> dict:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


# --- what the chart renders from the values (template names in the comments) -------------------


def chart_fullname(chart_name: str) -> str:
    """dagster.fullname: the release name, suffixed with the chart's name unless it contains it."""
    return RELEASE if chart_name in RELEASE else f"{RELEASE}-{chart_name}"


def image_name(image: dict) -> str:
    """dagster.dagsterImage.name"""
    return f"{image['repository']}:{image['tag']}"


def service_account_name(values: dict) -> str:
    """dagster.serviceAccountName"""
    return values.get("global", {}).get("serviceAccountName") or values["serviceAccount"]["name"]


def postgres_secret_name(values: dict) -> str:
    """dagster.postgresql.secretName"""
    return values.get("global", {}).get("postgresqlSecretName") or f"{chart_fullname('dagster')}-postgresql-secret"


def chart_container_context(values: dict) -> dict:
    """dagster-user-deployments' k8sContainerContext: what the code location hands to its runs."""
    deployment = user_deployment(values)
    k8s = {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [
            f"{chart_fullname('dagster-user-deployments')}-{deployment['name']}-user-env",
            *(c["name"] for c in deployment.get("envConfigMaps", [])),
        ],
        "env_secrets": [s["name"] for s in deployment.get("envSecrets", [])],
        "volume_mounts": deployment.get("volumeMounts", []),
        "volumes": deployment.get("volumes", []),
        "labels": deployment.get("labels", {}),
        "resources": deployment.get("resources", {}),
        "namespace": NAMESPACE,
        "service_account_name": service_account_name(values),
        "env": deployment.get("env", []),
    }
    return {"k8s": {key: value for key, value in k8s.items() if value}}


def chart_run_launcher(values: dict) -> dict:
    """dagsterYaml.runLauncher.k8s"""
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    config = {
        "load_incluster_config": launcher["loadInclusterConfig"],
        "job_namespace": launcher.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": service_account_name(values),
        "dagster_home": CHART_DAGSTER_HOME,
        "instance_config_map": f"{chart_fullname('dagster')}-instance",
        "postgres_password_secret": postgres_secret_name(values),
    }
    for key, name in [("envConfigMaps", "env_config_maps"), ("envSecrets", "env_secrets")]:
        if launcher.get(key):
            config[name] = [item["name"] for item in launcher[key]]
    for key, name in [
        ("envVars", "env_vars"),
        ("volumeMounts", "volume_mounts"),
        ("volumes", "volumes"),
        ("labels", "labels"),
        ("resources", "resources"),
        ("securityContext", "security_context"),
    ]:
        if launcher.get(key):
            config[name] = launcher[key]
    run_k8s = launcher.get("runK8sConfig") or {}
    if run_k8s:
        names = {
            "containerConfig": "container_config",
            "podSpecConfig": "pod_spec_config",
            "podTemplateSpecMetadata": "pod_template_spec_metadata",
            "jobSpecConfig": "job_spec_config",
            "jobMetadata": "job_metadata",
        }
        config["run_k8s_config"] = {names[key]: value for key, value in run_k8s.items() if value}
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


def chart_run_coordinator(values: dict) -> dict:
    """dagsterYaml.runCoordinator.queued"""
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    config = {}
    if queued.get("maxConcurrentRuns"):
        config["max_concurrent_runs"] = queued["maxConcurrentRuns"]
    if queued.get("tagConcurrencyLimits"):
        config["tag_concurrency_limits"] = queued["tagConcurrencyLimits"]
    return {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator", "config": config}


def chart_postgres_db(values: dict) -> dict:
    """dagsterYaml.postgresql.config"""
    pg = values["postgresql"]
    config = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg.get("postgresqlParams", {}),
    }
    if pg.get("postgresqlScheme"):
        config["scheme"] = pg["postgresqlScheme"]
    return config


def chart_compute_logs(values: dict) -> dict:
    """dagsterYaml.computeLogManager.s3"""
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    s3 = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    config = {"bucket": s3["bucket"], "verify": s3.get("verify") is not False}
    for key, name in [("prefix", "prefix"), ("region", "region"), ("endpointUrl", "endpoint_url")]:
        if s3.get(key):
            config[name] = s3[key]
    return {"module": "dagster_aws.s3.compute_log_manager", "class": "S3ComputeLogManager", "config": config}


def chart_instance_yaml(values: dict, postgres_db: dict) -> dict:
    """configmap-instance.yaml's dagster.yaml (the parts calmon's values set)."""
    storage = {"postgres_db": postgres_db}
    return {
        "run_launcher": chart_run_launcher(values),
        "run_coordinator": chart_run_coordinator(values),
        "run_storage": {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", "config": storage},
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": storage,
        },
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": storage,
        },
        "compute_logs": chart_compute_logs(values),
        "telemetry": {"enabled": False},
    }


def chart_user_code_command(values: dict) -> list[str]:
    """deployment-user.yaml's container args."""
    deployment = user_deployment(values)
    return ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", str(deployment["port"]), *deployment["dagsterApiGrpcArgs"]]


def chart_user_code_env(values: dict) -> dict[str, str]:
    """deployment-user.yaml's env (the literal values; valueFrom entries come from Secrets)."""
    deployment = user_deployment(values)
    env = {
        "DAGSTER_CURRENT_IMAGE": image_name(deployment["image"]),
        "DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT": json.dumps(chart_container_context(values)),
    }
    env.update({item["name"]: item["value"] for item in deployment.get("env", []) if "value" in item})
    return env


# --- the Dockerfile ----------------------------------------------------------------------------


def dockerfile_final_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), arguments.strip()))
    return stages[-1]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for instruction, arguments in dockerfile_final_stage():
        if instruction == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", arguments)))
    return env


def dockerfile_user() -> int:
    users = [arguments for instruction, arguments in dockerfile_final_stage() if instruction == "USER"]
    return int(users[-1].split(":")[0])


def test_dockerfile_agrees_with_the_values():
    values = load_values()
    deployment = user_deployment(values)
    stage = dockerfile_final_stage()
    env = dockerfile_env()
    chart_env = chart_user_code_env(values)
    mounts = {m["name"]: m["mountPath"] for m in deployment["volumeMounts"]}
    config_volume = next(v["name"] for v in deployment["volumes"] if "configMap" in v)

    assert env["CALMON_CONFIG_DIR"] == chart_env["CALMON_CONFIG_DIR"] == mounts[config_volume]
    assert env["DAGSTER_HOME"] == CHART_DAGSTER_HOME
    uid = dockerfile_user()
    assert uid != 0
    assert deployment["podSecurityContext"]["runAsUser"] == uid
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["securityContext"]["runAsUser"] == uid
    # The chart and the run launcher set the container's args to a whole `dagster ...` command.
    assert not [a for i, a in stage if i == "ENTRYPOINT"]
    (cmd,) = [json.loads(a) for i, a in stage if i == "CMD"]
    assert cmd[:3] == chart_user_code_command(values)[:3] == ["dagster", "api", "grpc"]
    assert cmd[cmd.index("-m") + 1] == deployment["dagsterApiGrpcArgs"][1] == "calmon_assets.definitions"
    assert str(deployment["port"]) in cmd
    assert any(i == "COPY" and "/usr/local/bin/kubectl" in a for i, a in stage)


def test_run_queue_limits_each_site_as_the_settings_say():
    """The chart's tag concurrency limit is per value of calmon/deployment, at the shipped settings'
    max_concurrent_per_deployment (what `calmon monitor` and the CLI's own instance use)."""
    values = load_values()
    (limit,) = chart_run_coordinator(values)["config"]["tag_concurrency_limits"]
    settings = load_settings(REPO / "configs" / SETTINGS_FILE)
    assert limit == {
        "key": DEPLOYMENT_TAG,
        "value": {"applyLimitPerUniqueValue": True},
        "limit": settings.schedule.max_concurrent_per_deployment,
    }


# --- the run pod's Job, built by K8sRunLauncher from the chart's instance ------------------------


@pytest.fixture
def kubernetes_api(httpserver):
    """A local HTTP server answering the Kubernetes API's Job creation; returns the bodies POSTed."""
    created: list[tuple[str, dict]] = []

    def create_job(request: Request) -> Response:
        body = json.loads(request.get_data())
        created.append((request.path, body))
        return Response(json.dumps(body), status=201, content_type="application/json")

    httpserver.expect_request(re.compile(r"/apis/batch/v1/namespaces/[^/]+/jobs"), method="POST").respond_with_handler(
        create_job
    )
    return httpserver, created


def write_kubeconfig(path: Path, server_url: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": {"server": server_url}}],
                "users": [{"name": "runner", "user": {"token": "local-token"}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": "runner"}}],
                "current-context": "local",
            }
        )
    )


def write_chart_instance(home: Path, values: dict, postgres, kubernetes_api_url: str) -> dict:
    """DAGSTER_HOME/dagster.yaml as the chart renders it from the values; only where Postgres and
    the Kubernetes API are differs (the values point at RDS and load the in-cluster config)."""
    test_server = {
        "hostname": postgres.host,
        "port": postgres.port,
        "username": postgres.username,
        "db_name": postgres.database,
        "params": {},
    }
    instance_yaml = chart_instance_yaml(values, {**chart_postgres_db(values), **test_server})
    launcher_config = instance_yaml["run_launcher"]["config"]
    assert launcher_config["load_incluster_config"] is True
    home.mkdir(parents=True, exist_ok=True)
    write_kubeconfig(home / "kubeconfig", kubernetes_api_url)
    launcher_config.update(load_incluster_config=False, kubeconfig_file=str(home / "kubeconfig"))
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
    return instance_yaml


def site_config_folder(path: Path) -> Path:
    """What the calmon-config ConfigMap holds: the shipped settings and a fleet with a kubectl site."""
    path.mkdir()
    shipped = (REPO / "configs" / SETTINGS_FILE).read_text()
    # a site that says when its checks began (the schedule ticks below are after it)
    (path / SETTINGS_FILE).write_text(re.sub(r"(?m)^start_date =.*$", f"start_date = {LOCAL_SITE_START_DATE}", shipped))
    shutil.copy(REPO / "configs" / "devices.example.yaml", path / "devices.yaml")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_user_code(root: Path, config_dir: Path, secret_env: dict[str, str]) -> Iterator[int]:
    """`dagster api grpc` as the chart's user-code deployment runs it, with the chart's environment
    (the ConfigMap's folder at a local path, `secret_env` as the Secrets give it); yields its port."""
    from dagster._grpc.client import DagsterGrpcClient

    values = load_values()
    env = {**os.environ, **chart_user_code_env(values), **secret_env}
    env["CALMON_CONFIG_DIR"] = str(config_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("DAGSTER_HOME", None)
    port = free_port()
    command = chart_user_code_command(values)
    command[command.index("-h") + 1] = "127.0.0.1"
    command[command.index("-p") + 1] = str(port)
    workdir = root / "user-code"
    workdir.mkdir(parents=True)
    log_path = root / "grpc.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), *command[1:]],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        try:
            while True:
                if process.poll() is not None:
                    pytest.fail(f"dagster api grpc exited {process.returncode}: {log_path.read_text()}")
                try:
                    client.ping("up")
                    break
                except Exception:
                    time.sleep(0.2)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                # a server stuck in a call never returns to its signal handler
                process.kill()
                process.wait()


@contextmanager
def code_location(instance, port: int):
    """The user-code deployment as the webserver and the daemon see it: (workspace, location, repository)."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import GrpcServerTarget

    name = user_deployment(load_values())["name"]
    target = GrpcServerTarget(host="127.0.0.1", port=port, socket=None, location_name=name)
    with WorkspaceProcessContext(instance, target) as process_context:
        workspace = process_context.create_request_context()
        location = workspace.get_code_location(name)
        (repository,) = location.get_repositories().values()
        yield workspace, location, repository


def open_instance(home: Path):
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    return DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def apply_sensor(instance, location, repository, name: str):
    """One tick of a sensor as the daemon runs it, its dynamic partition requests applied."""
    data = location.get_sensor_execution_data(instance, repository.handle, name, None, None, None, None, None)
    for request in data.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys or []))
    return data


def schedule_runs(instance, location, repository, tick: datetime.datetime) -> list:
    """The calibration_check_schedule's tick, its runs created as the daemon creates them."""
    from dagster._core.definitions.timestamp import TimestampWithTimezone
    from dagster._daemon.daemon import SchedulerDaemon  # noqa: F401 (imports the scheduler module in order)
    from dagster._scheduler.scheduler import _create_scheduler_run

    schedule = repository.get_schedule("calibration_check_schedule")
    data = location.get_schedule_execution_data(
        instance, repository.handle, schedule.name, TimestampWithTimezone(tick.timestamp(), "UTC"), None
    )
    job = repository.get_full_job(schedule.job_name)
    return [_create_scheduler_run(instance, tick, location, schedule, job, r) for r in data.run_requests]


def test_check_run_job_built_from_the_values(tmp_path, postgres, kubernetes_api, monkeypatch):
    from dagster._core.storage.tags import DOCKER_IMAGE_TAG
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import PostgresRunStorage

    values = load_values()
    deployment = user_deployment(values)
    httpserver, created = kubernetes_api
    home = tmp_path / "dagster_home"
    write_chart_instance(home, values, postgres, httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", postgres.password)
    config_dir = site_config_folder(tmp_path / "calmon-config")

    with (
        running_user_code(tmp_path, config_dir, {"DAGSTER_PG_PASSWORD": postgres.password}) as port,
        open_instance(home) as instance,
        code_location(instance, port) as (workspace, location, repository),
    ):
        assert isinstance(instance.run_launcher, K8sRunLauncher)
        assert isinstance(instance.run_storage, PostgresRunStorage)
        (queue_limit,) = instance.run_coordinator.get_run_queue_config().tag_concurrency_limits
        assert queue_limit["key"] == DEPLOYMENT_TAG
        schedule = repository.get_schedule("calibration_check_schedule")
        apply_sensor(instance, location, repository, "sync_devices")
        runs = schedule_runs(instance, location, repository, datetime.datetime(2026, 3, 1, 10, 5, tzinfo=datetime.UTC))
        run = next(r for r in runs if r.tags.get(DEPLOYMENT_TAG) == "city-north")
        instance.launch_run(run.run_id, workspace)

    (path, body), *others = created
    assert not others
    image = image_name(deployment["image"])
    assert path == f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"

    # the run, in Postgres: tagged for the run queue and with the image it runs in
    with open_instance(home) as instance:
        stored = instance.get_run_by_id(run.run_id)
    assert stored.tags[DEPLOYMENT_TAG] == "city-north"
    assert stored.tags["dagster/partition"].startswith("city-north|")  # one run for the deployment
    assert stored.tags[DOCKER_IMAGE_TAG] == image

    pod = body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # image and command
    assert container["image"] == image
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    execute_args = json.loads(container["args"][3])
    assert deployment["dagsterApiGrpcArgs"][1] in json.dumps(execute_args)  # the module the run loads
    assert schedule.job_name in json.dumps(execute_args)
    # the instance the run pod opens: the same Postgres, its password read from the Secret's variable
    assert "dagster_postgres.run_storage" in json.dumps(execute_args)
    assert "DAGSTER_PG_PASSWORD" in json.dumps(execute_args)
    assert postgres.password not in json.dumps(body)
    # environment: the values' variables, the Secrets, the instance's Postgres password
    env = {item["name"]: item for item in container["env"]}
    for item in deployment["env"]:
        assert env[item["name"]]["value"] == item["value"]
    assert env["DAGSTER_HOME"]["value"] == CHART_DAGSTER_HOME
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": postgres_secret_name(values),
        "key": "postgresql-password",
    }
    secrets_from = [source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source]
    assert secrets_from == [s["name"] for s in deployment["envSecrets"]]
    # volumes: the config folder (ConfigMap), the kubeconfig (Secret), the instance's dagster.yaml
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    for volume in deployment["volumes"]:
        assert {k: v for k, v in volumes[volume["name"]].items() if k in volume} == volume
    for mount in deployment["volumeMounts"]:
        assert mounts[mount["name"]] == mount["mountPath"]
    config_volume = next(v["name"] for v in deployment["volumes"] if "configMap" in v)
    kubeconfig_volume = next(v["name"] for v in deployment["volumes"] if "secret" in v)
    assert mounts[config_volume] == env["CALMON_CONFIG_DIR"]["value"] == dockerfile_env()["CALMON_CONFIG_DIR"]
    assert Path(env["KUBECONFIG"]["value"]).parent == Path(mounts[kubeconfig_volume])
    # who the pod runs as: the IRSA service account, the image's non-root user
    assert pod["serviceAccountName"] == values["serviceAccount"]["name"]
    assert "eks.amazonaws.com/role-arn" in values["serviceAccount"]["annotations"]
    assert container["securityContext"]["runAsUser"] == dockerfile_user()
    assert pod["securityContext"]["fsGroup"] == deployment["podSecurityContext"]["fsGroup"]
    assert container["resources"] == values["runLauncher"]["config"]["k8sRunLauncher"]["resources"]
    # labels and the Job's lifetime
    labels = body["metadata"]["labels"]
    assert labels["dagster/job"] == schedule.job_name
    assert labels["dagster/run-id"] == run.run_id
    assert labels["app.kubernetes.io/part-of"] == "calmon"
    job_spec = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["jobSpecConfig"]
    assert body["spec"]["ttlSecondsAfterFinished"] == job_spec["ttlSecondsAfterFinished"]


@pytest.mark.parametrize("executor", ["in_process", "multiprocess", "k8s"])
def test_every_jobs_run_config_is_valid_under_each_executor(tmp_path, executor):
    """The run config the schedule, a backfill, the UI (none) and the CLI (console log level) give a
    job validates whatever `[execution] executor` selects: no job names an executor of its own."""
    import dagster as dg

    from calmon_assets.definitions import build_definitions

    config_dir = site_config_folder(tmp_path / "configs")
    ini = config_dir / SETTINGS_FILE
    ini.write_text(re.sub(r"(?m)^executor = .*$", f"executor = {executor}", ini.read_text()))
    assert load_settings(config_dir / SETTINGS_FILE).execution.executor == executor
    defs = build_definitions(str(config_dir))
    cli_run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    jobs = list(defs.resolve_all_job_defs())
    assert {"calibration_check", "reprocess_offsets", "reference_scan_job", "results_table_maintenance"} <= {
        job.name for job in jobs
    }
    for job in jobs:
        assert job.executor_def.name == {"in_process": "in_process", "multiprocess": "multiprocess"}.get(
            executor, "k8s"
        ), job.name
        for run_config in ({}, cli_run_config):
            dg.validate_run_config(job, run_config)


def test_shipped_workspace_passes_dagster_definitions_validate(tmp_path):
    """What the webserver and the daemon load (workspace.yaml), checked by Dagster's own command."""
    env = {**os.environ, "CALMON_CONFIG_DIR": str(site_config_folder(tmp_path / "configs")), "PYTHONPATH": str(REPO)}
    env.pop("DAGSTER_HOME", None)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr
