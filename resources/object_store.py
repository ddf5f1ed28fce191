"""Object store: one interface, a local-folder backend (embedded default) and an S3 backend.

Keys follow calmon_core.layout (shared/docs/capture-format.md); this module only moves bytes.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

import dagster as dg

from calmon_core.layout import DEFAULT_BUCKET, s3_uri

T = TypeVar("T")
_SINGLE_PUT_MAX_BYTES = 64 * 1024 * 1024  # bigger files go through boto3's multipart transfer


class ObjectStoreError(Exception):
    """A failed object-store operation; the message names the key (never credentials)."""


class ObjectNotFoundError(ObjectStoreError):
    """The store answered and the object is not there (as opposed to a store that cannot be reached)."""


@runtime_checkable
class ObjectStore(Protocol):
    bucket: str

    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def put_file(self, key: str, path: str | Path) -> None: ...
    def get_file(self, key: str, path: str | Path) -> Path: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def uri(self, key: str) -> str: ...
    def upload_folder(self, folder: Path, prefix: str) -> list[str]: ...
    def download_folder(self, prefix: str, folder: Path) -> Path: ...


def check_key(key: str) -> str:
    """A relative, '/'-separated key without '..' or empty segments (it must not escape its root)."""
    if not isinstance(key, str) or not key or key.startswith("/") or "\\" in key:
        raise ObjectStoreError(f"invalid object key {key!r}: must be a relative '/'-separated path")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ObjectStoreError(f"invalid object key {key!r}: empty, '.' or '..' segment")
    return key


def _prefix_dir(prefix: str) -> str:
    prefix = prefix.strip("/")
    if prefix:
        check_key(prefix)
    return prefix


def _folder_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ObjectStoreError(f"cannot upload {folder}: not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file())


class _FolderTransfers:
    """upload_folder/download_folder on top of put_file/get_file/list (shared by both backends)."""

    def upload_folder(self, folder: Path, prefix: str) -> list[str]:
        """Upload every file below folder to prefix/<relative path>; the manifest goes last so a
        reader that sees manifest.json sees a complete capture."""
        prefix = _prefix_dir(prefix)
        files = _folder_files(folder)
        files.sort(key=lambda p: p.name == "manifest.json")
        keys = []
        for path in files:
            relative = path.relative_to(folder).as_posix()
            key = f"{prefix}/{relative}" if prefix else relative
            self.put_file(key, path)  # type: ignore[attr-defined]
            keys.append(key)
        return keys

    def download_folder(self, prefix: str, folder: Path) -> Path:
        prefix = _prefix_dir(prefix)
        keys = self.list(prefix + "/" if prefix else "")  # type: ignore[attr-defined]
        if not keys:
            raise ObjectNotFoundError(f"nothing stored under {self.uri(prefix)}")  # type: ignore[attr-defined]
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        root = folder.resolve()
        for key in keys:
            relative = key[len(prefix) + 1 :] if prefix else key
            target = (folder / relative).resolve()
            if not target.is_relative_to(root):
                raise ObjectStoreError(f"key {key!r} would leave the download folder {folder}")
            self.get_file(key, target)  # type: ignore[attr-defined]
        return folder


class LocalObjectStore(_FolderTransfers):
    """Objects as files below root/<bucket>/ (the embedded default)."""

    def __init__(self, root: str | Path, bucket: str = DEFAULT_BUCKET):
        self.bucket = bucket
        self.root = Path(root).expanduser().resolve() / bucket
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ObjectStoreError(f"invalid object key {key!r}: leaves the store root {self.root}")
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # write-then-rename: a reader never sees half an object
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise ObjectStoreError(f"cannot write {self.uri(key)}: {exc.strerror or exc}") from exc

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object {self.uri(key)}") from None
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {self.uri(key)}: {exc.strerror or exc}") from exc

    def put_file(self, key: str, path: str | Path) -> None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {path} for upload to {key!r}: {exc}") from exc
        self.put_bytes(key, data)

    def get_file(self, key: str, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.get_bytes(key))
        return target

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        """Keys starting with prefix (plain string prefix, like S3), sorted."""
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(base) if base else self.root
        if not start.is_dir():
            return []
        keys = []
        for path in start.rglob("*"):
            if path.is_file() and not path.name.endswith(".tmp"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def uri(self, key: str) -> str:
        return (self.root / key).as_uri() if key else self.root.as_uri()


def _is_transient(exc: Exception) -> bool:
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ConnectTimeoutError | ReadTimeoutError):
        return True
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return (
            status >= 500
            or status == 429
            or code
            in (
                "Throttling",
                "ThrottlingException",
                "SlowDown",
                "RequestTimeout",
                "InternalError",
                "ServiceUnavailable",
                "RequestTimeTooSkewed",
            )
        )
    return False


def _describe(exc: Exception) -> str:
    """An error's code and message only (botocore messages carry no credentials or signatures)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{error.get('Code', 'error')} (HTTP {status}): {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


class S3ObjectStore(_FolderTransfers):
    """S3 (or an S3-compatible store via endpoint_url) through boto3, with retried transient errors.

    Credentials come from the standard AWS chain (env, profile, instance role), never from config.
    """

    def __init__(
        self,
        bucket: str,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        backoff_seconds: float = 0.2,
    ):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.max_attempts = max(1, max_attempts)
        self.backoff_seconds = backoff_seconds
        # botocore's own retries are off: one retry loop (ours) so attempts are countable and the
        # whole multipart upload is retried, not just one part.
        self.client = boto3.client(
            "s3",
            region_name=region,
            endpoint_url=endpoint_url or None,
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=60),
        )
        self.attempts = 0  # total requests made, for tests and diagnostics

    def _call(self, what: str, key: str, operation: Callable[[], T]) -> T:
        last: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            self.attempts += 1
            try:
                return operation()
            except Exception as exc:  # boto3 raises a wide family; classify below
                if isinstance(exc, ObjectStoreError):
                    raise
                last = exc
                if not _is_transient(exc) or attempt == self.max_attempts:
                    break
                delay = self.backoff_seconds * (2 ** (attempt - 1))
                time.sleep(delay * (0.5 + random.random()))
        assert last is not None
        tries = f" after {attempt} attempt(s)" if attempt > 1 else ""
        raise ObjectStoreError(f"{what} {self.uri(key)} failed{tries}: {_describe(last)}") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        check_key(key)
        self._call("upload to", key, lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data))

    def get_bytes(self, key: str) -> bytes:
        check_key(key)

        def get() -> bytes:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except self.client.exceptions.NoSuchKey:
                raise ObjectNotFoundError(f"no object {self.uri(key)}") from None

        return self._call("download of", key, get)

    def put_file(self, key: str, path: str | Path) -> None:
        check_key(key)
        path = Path(path)
        if not path.is_file():
            raise ObjectStoreError(f"cannot upload {path} to {self.uri(key)}: no such file")
        if path.stat().st_size <= _SINGLE_PUT_MAX_BYTES:
            # one PUT of the bytes: retried as a whole by _call, errors stay ClientErrors
            self.put_bytes(key, path.read_bytes())
        else:
            self._call("upload to", key, lambda: self._upload_large(path, key))

    def _upload_large(self, path: Path, key: str) -> None:
        from boto3.exceptions import S3UploadFailedError

        try:
            self.client.upload_file(str(path), self.bucket, key)
        except S3UploadFailedError as exc:  # unwrap so transient causes are retried
            raise (exc.__context__ or exc) from None

    def get_file(self, key: str, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.get_bytes(key))
        return target

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        check_key(key)

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
                return True
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return False
                raise

        return self._call("lookup of", key, head)

    def list(self, prefix: str) -> list[str]:
        def listing() -> list[str]:
            keys: list[str] = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
            return sorted(keys)

        return self._call("listing of", prefix, listing)

    def uri(self, key: str) -> str:
        return s3_uri(self.bucket, key)


class ObjectStoreResource(dg.ConfigurableResource):
    """Where captures and diagnostics are stored: a local folder or S3 (calibration_monitoring.ini)."""

    backend: str = "local"
    bucket: str = DEFAULT_BUCKET
    local_root: str = ".calmon/object-store"
    region: str = "us-east-1"
    endpoint_url: str | None = None
    max_attempts: int = 5

    def get_client(self) -> ObjectStore:
        if self.backend == "s3":
            return S3ObjectStore(
                self.bucket,
                region=self.region,
                endpoint_url=self.endpoint_url,
                max_attempts=self.max_attempts,
            )
        if self.backend == "local":
            return LocalObjectStore(self.local_root, bucket=self.bucket)
        raise ObjectStoreError(f"unknown object store backend {self.backend!r} (expected 'local' or 's3')")
