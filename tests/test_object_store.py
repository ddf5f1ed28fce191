"""Object store: local folder backend and S3 against moto's server over HTTP (with injected 500s)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from calmon_core.layout import query_scan_prefix
from resources.object_store import (
    LocalObjectStore,
    ObjectStore,
    ObjectStoreError,
    ObjectStoreResource,
    S3ObjectStore,
)
from tests.servers import FlakyProxy

PREFIX = query_scan_prefix("harbor-east", "cam-07", "20261124T130000Z")


def capture_folder(root: Path) -> Path:
    folder = root / "capture"
    (folder / "images").mkdir(parents=True)
    (folder / "manifest.json").write_text('{"format": "calmon.capture/1"}')
    for i in range(3):
        (folder / "images" / f"{i:03d}.jpg").write_bytes(bytes([i]) * (1000 + i))
    return folder


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "store", bucket="bucket-a")
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return S3ObjectStore(bucket, endpoint_url=endpoint, backoff_seconds=0.01)


def test_bytes_round_trip_exists_and_list(store):
    store.put_bytes(f"{PREFIX}/manifest.json", b"{}")
    store.put_bytes(f"{PREFIX}/images/000.jpg", b"\xff\xd8jpeg")
    store.put_bytes("harbor-east/cam-08/reference_scan/manifest.json", b"{}")
    assert store.get_bytes(f"{PREFIX}/images/000.jpg") == b"\xff\xd8jpeg"
    assert store.exists(f"{PREFIX}/manifest.json")
    assert not store.exists(f"{PREFIX}/missing.json")
    assert store.list("harbor-east/cam-07/") == [f"{PREFIX}/images/000.jpg", f"{PREFIX}/manifest.json"]
    assert store.list("harbor-east/cam-0") == sorted(
        [f"{PREFIX}/images/000.jpg", f"{PREFIX}/manifest.json", "harbor-east/cam-08/reference_scan/manifest.json"]
    )
    assert store.list("nothing/") == []


def test_missing_key_error_names_the_key(store):
    with pytest.raises(ObjectStoreError, match="harbor-east/cam-07/nothing.json"):
        store.get_bytes("harbor-east/cam-07/nothing.json")


def test_folder_upload_download_round_trip(store, tmp_path):
    folder = capture_folder(tmp_path)
    keys = store.upload_folder(folder, PREFIX)
    assert keys[-1] == f"{PREFIX}/manifest.json"  # manifest last: a visible manifest means complete
    assert sorted(keys) == store.list(PREFIX + "/")
    copy = store.download_folder(PREFIX, tmp_path / "copy")
    for path in folder.rglob("*"):
        if path.is_file():
            assert (copy / path.relative_to(folder)).read_bytes() == path.read_bytes()
    with pytest.raises(ObjectStoreError, match="nothing stored"):
        store.download_folder("harbor-east/cam-99/reference_scan", tmp_path / "none")


def test_file_put_get(store, tmp_path):
    source = tmp_path / "diag.png"
    source.write_bytes(b"\x89PNG" + bytes(range(256)) * 40)
    store.put_file(f"{PREFIX}/diagnostics/diag.png", source)
    target = store.get_file(f"{PREFIX}/diagnostics/diag.png", tmp_path / "out" / "diag.png")
    assert target.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs/key", "a//b", "", "a\\b", "./a"])
def test_keys_cannot_escape(store, key):
    with pytest.raises(ObjectStoreError, match="invalid object key"):
        store.put_bytes(key, b"x")


def test_local_uri_is_a_file_uri(tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    store.put_bytes("a/b.txt", b"x")
    assert store.uri("a/b.txt") == (tmp_path / "store" / "camera-calibration-monitoring" / "a" / "b.txt").as_uri()
    assert Path(store.uri("a/b.txt").removeprefix("file://")).read_bytes() == b"x"


def test_s3_uri(s3_bucket):
    endpoint, bucket = s3_bucket
    assert S3ObjectStore(bucket, endpoint_url=endpoint).uri(PREFIX) == f"s3://{bucket}/{PREFIX}"


def test_s3_uploads_survive_500s_then_recover(s3_bucket, tmp_path):
    endpoint, bucket = s3_bucket
    folder = capture_folder(tmp_path)
    with FlakyProxy(endpoint, failures=3) as proxy:
        store = S3ObjectStore(bucket, endpoint_url=proxy.url, max_attempts=5, backoff_seconds=0.01)
        keys = store.upload_folder(folder, PREFIX)
        assert proxy.failed == 3
        assert store.attempts == len(keys) + 3  # every failure was retried, nothing more
    direct = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    stored = direct.get_object(Bucket=bucket, Key=f"{PREFIX}/images/002.jpg")["Body"].read()
    assert stored == (folder / "images" / "002.jpg").read_bytes()


def test_s3_persistent_500s_raise_a_clear_error_without_secrets(s3_bucket):
    endpoint, bucket = s3_bucket
    with FlakyProxy(endpoint, failures=100) as proxy:
        store = S3ObjectStore(bucket, endpoint_url=proxy.url, max_attempts=3, backoff_seconds=0.01)
        with pytest.raises(ObjectStoreError) as raised:
            store.put_bytes(f"{PREFIX}/manifest.json", b"{}")
        assert proxy.requests == 3
    message = str(raised.value)
    assert f"s3://{bucket}/{PREFIX}/manifest.json" in message and "3 attempt" in message
    assert "InternalError" in message
    assert "testing" not in message  # the (test) access key and secret never show


def test_s3_client_errors_are_not_retried(s3_bucket):
    endpoint, _ = s3_bucket
    store = S3ObjectStore("no-such-bucket-here", endpoint_url=endpoint, backoff_seconds=0.01)
    with pytest.raises(ObjectStoreError, match="NoSuchBucket"):
        store.put_bytes("a/b", b"x")
    assert store.attempts == 1


def test_resource_builds_the_configured_store(tmp_path, s3_bucket):
    endpoint, bucket = s3_bucket
    local = ObjectStoreResource(local_root=str(tmp_path / "o")).get_client()
    assert isinstance(local, LocalObjectStore)
    s3 = ObjectStoreResource(backend="s3", bucket=bucket, endpoint_url=endpoint).get_client()
    assert isinstance(s3, S3ObjectStore)
    s3.put_bytes("x/y", b"1")
    client = ObjectStoreResource(backend="s3", bucket=bucket, endpoint_url=endpoint).get_client()
    assert client.get_bytes("x/y") == b"1"
    assert isinstance(ObjectStoreResource(local_root=str(tmp_path / "r")).get_client(), LocalObjectStore)
    with pytest.raises(ObjectStoreError, match="unknown object store backend 'ftp'"):
        ObjectStoreResource(backend="ftp").get_client()
