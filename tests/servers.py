"""Real local servers for tests: moto (S3, Glue) over HTTP, a proxy that fails the first N requests
with 500s, a scripted Slack incoming-webhook receiver and a throwaway PostgreSQL server. Fixtures live
in tests/conftest.py."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TEST_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's ThreadedMotoServer (S3, Glue, Athena on one port); yields its endpoint URL.

    Callers set TEST_AWS_ENV in the environment (the conftest fixture does) before using boto3.
    """
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def reset_moto(endpoint: str) -> None:
    """Forget every bucket, database and table moto holds (between tests sharing one server)."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()


class FlakyProxy:
    """HTTP reverse proxy to `upstream` that answers the first `failures` requests with `status`
    (500 by default) and forwards the rest: an S3 endpoint that misbehaves, then recovers."""

    def __init__(self, upstream: str, failures: int, status: int = 500):
        self.upstream = upstream.rstrip("/")
        self.failures = failures
        self.status = status
        self.requests = 0
        self.failed = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy.requests += 1
                    fail = proxy.failed < proxy.failures
                    if fail:
                        proxy.failed += 1
                if fail:
                    payload = (
                        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
                        b"<Message>injected failure</Message></Error>"
                    )
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                status, headers, data = proxy._forward(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _forward(self, method: str, path: str, headers: dict, body: bytes):
        import http.client
        from urllib.parse import urlsplit

        target = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        headers = {k: v for k, v in headers.items() if k.lower() not in ("connection",)}
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, response.getheaders(), data

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class WebhookRequest:
    at: float  # time.monotonic() when received
    payload: dict
    path: str


@dataclass
class ScriptedWebhook:
    """A local Slack incoming webhook answering from a script of (status, headers) replies, then
    200 "ok" once the script runs out. Records every request it receives."""

    script: list[tuple[int, dict]] = field(default_factory=list)
    requests: list[WebhookRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body or b"{}")
                except json.JSONDecodeError:
                    payload = {"_invalid": body.decode("utf-8", "replace")}
                receiver.requests.append(WebhookRequest(time.monotonic(), payload, self.path))
                status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                text = {200: b"ok", 429: b"rate_limited", 404: b"no_service"}.get(status, b"server_error")
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, str(value))
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/services/T0SECRET/B0SECRET/xoxSECRETtoken"

    def texts(self) -> list[str]:
        return [r.payload.get("text", "") for r in self.requests]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL server (Debian's postgresql binaries) on a free loopback port."""

    host: str
    port: int
    username: str
    password: str
    database: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.username}:{self.password}@{self.host}:{self.port}/{self.database}"


def _postgres_bin() -> Path | None:
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextmanager
def postgres_server(database: str = "dagster") -> Iterator[PostgresServer]:
    """initdb + pg_ctl in a temporary folder, password authentication over TCP, stopped and deleted
    at exit. PostgreSQL refuses to run as root: as root the server runs as the `postgres` user
    (created by Debian's package). Raises RuntimeError when the binaries are missing."""
    import os
    import pwd
    import secrets
    import shutil
    import subprocess
    import tempfile

    bin_dir = _postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL's initdb was not found (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="calmon-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer("127.0.0.1", _free_port(), "calmon", secrets.token_hex(8), database)
    data, log = root / "data", root / "server.log"
    pwfile = root / "pwfile"
    pwfile.write_text(server.password + "\n")
    if run_as:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)

    def run(*args: str) -> None:
        subprocess.run([*run_as, *args], check=True, capture_output=True, text=True)

    try:
        run(
            str(bin_dir / "initdb"), "-D", str(data), "-U", server.username, f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        env = {**os.environ, "PGPASSWORD": server.password}
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", server.host, "-p", str(server.port), "-U", server.username, database],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
