"""Shared fixtures: the real scenes folder and a real MQTT broker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from calmon_sim.broker import EmbeddedBroker
from calmon_sim.scene import default_scenes_dir

REPO = Path(__file__).resolve().parent.parent


def _tests_config_dir() -> Path:
    """The shipped settings, from the day the tests' histories begin. The code location's
    partitions load from $CALMON_CONFIG_DIR when calmon_assets is first imported; with the shipped
    file's empty start_date they would begin on the day the suite first ran, after the checks the
    tests replay."""
    import re
    import tempfile

    from calmon_core.config import LOCAL_SITE_START_DATE, SETTINGS_FILE

    folder = Path(tempfile.mkdtemp(prefix="calmon-tests-config-"))
    shipped = (REPO / "configs" / SETTINGS_FILE).read_text()
    text, found = re.subn(r"(?m)^start_date =.*$", f"start_date = {LOCAL_SITE_START_DATE}", shipped)
    assert found == 1, f"configs/{SETTINGS_FILE} has no [schedule] start_date line"
    (folder / SETTINGS_FILE).write_text(text)
    return folder


os.environ["CALMON_CONFIG_DIR"] = str(_tests_config_dir())


@pytest.fixture(scope="session")
def scenes_dir() -> Path:
    """../shared/data/scenes (or $CALMON_SCENES_DIR); tests that need it skip only when absent."""
    path = default_scenes_dir()
    if not path.is_dir():
        pytest.skip(f"real scenes folder {path} is absent")
    return path


@pytest.fixture
def broker():
    """A real MQTT broker on a free loopback port (mosquitto, else amqtt), per test."""
    b = EmbeddedBroker(prefer=os.environ.get("CALMON_TEST_BROKER", "mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def shared_broker():
    """One broker for tests that do not restart it."""
    b = EmbeddedBroker(prefer=os.environ.get("CALMON_TEST_BROKER", "mosquitto"))
    b.start()
    yield b
    b.stop()


# --- infrastructure servers (tests/servers.py): moto over HTTP, fake kubectl on PATH ----------


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's server (S3 + Glue) on a loopback port for the session, with test AWS credentials."""
    from tests.servers import TEST_AWS_ENV, moto_server

    patch = pytest.MonkeyPatch()
    for key, value in TEST_AWS_ENV.items():
        patch.setenv(key, value)
    with moto_server() as endpoint:
        yield endpoint
    patch.undo()


@pytest.fixture
def s3_bucket(moto_endpoint):
    """A fresh bucket on the moto server: (endpoint, bucket name)."""
    import uuid

    import boto3

    name = f"calmon-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return moto_endpoint, name


@pytest.fixture
def fake_kubectl(monkeypatch, tmp_path):
    """tests/fake_kubectl/kubectl first on PATH; returns the folder. Set FAKE_KUBECTL_* to steer it."""
    folder = REPO / "tests" / "fake_kubectl"
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(tmp_path / "kubectl-calls.jsonl"))
    monkeypatch.setenv("FAKE_KUBECTL_CONTEXTS", "fake-cluster,other-cluster")
    return folder


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (tests/servers.py), for Dagster's instance storage."""
    from tests.servers import postgres_server

    try:
        with postgres_server() as server:
            yield server
    except RuntimeError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
