"""An embedded MQTT broker for the demo and the tests: Debian's mosquitto, else amqtt in-process."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

STOP_TIMEOUT_S = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


class EmbeddedBroker:
    """Start with .start(), stop with .stop(); restartable on the same port (broker-restart tests)."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, prefer: str = "mosquitto"):
        self.host = host
        self.port = port or free_port(host)
        self.kind = "mosquitto" if prefer == "mosquitto" and shutil.which("mosquitto") else "amqtt"
        self._proc: subprocess.Popen | None = None
        self._amqtt: _AmqttInProcess | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="calmon-broker-")

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        if self.kind == "mosquitto":
            conf = Path(self._tmp.name) / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} {self.host}\nallow_anonymous true\n"
                "persistence false\nlog_dest none\nmax_queued_messages 10000\n"
            )
            self._proc = subprocess.Popen(
                ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            try:
                wait_for_port(self.host, self.port)
            except TimeoutError:
                err = self._proc.stderr.read().decode() if self._proc.poll() is not None else ""
                raise RuntimeError(f"mosquitto broker did not start on {self.host}:{self.port}: {err}") from None
        else:
            # listening once start() returns (the socket is calmon's own); a probing connection that
            # sends nothing would only make amqtt log two warnings on the user's terminal
            self._amqtt = _AmqttInProcess(self.host, self.port)
            self._amqtt.start()
        return self

    def stop(self) -> None:
        """Stop the broker; bounded (a few seconds at worst), idempotent, and it frees the port."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        if self._amqtt is not None:
            amqtt, self._amqtt = self._amqtt, None
            amqtt.stop()

    def restart(self, down_seconds: float = 0.5) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _AmqttInProcess:
    """amqtt on its own thread and event loop, behind a listening socket calmon owns (amqtt's "external"
    listener): stop() can then close the listener and every client connection within a bound, whatever
    state amqtt's own shutdown is in (a client that stopped reading makes amqtt's close wait forever)."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def thread_name(self) -> str:
        """Per port: a process may run several (the tests' shared broker beside one under test)."""
        return f"amqtt-broker-{self.port}"

    def start(self) -> None:
        ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(ready,), name=self.thread_name, daemon=True)
        self._thread.start()
        if not ready.wait(STOP_TIMEOUT_S * 2):
            raise RuntimeError(f"amqtt broker did not start on {self.host}:{self.port} in {STOP_TIMEOUT_S * 2:.0f}s")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT_S)
            raise RuntimeError(f"amqtt broker did not start on {self.host}:{self.port}: {self._error}")

    def stop(self) -> None:
        thread, loop, stop_requested = self._thread, self._loop, self._stop_requested
        self._thread = self._loop = self._stop_requested = None
        if thread is None:
            return
        if loop is not None and stop_requested is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(stop_requested.set)
            except RuntimeError:  # the loop already closed: the thread is on its way out
                pass
        # _serve bounds each of its shutdown steps; this join is only a backstop
        thread.join(STOP_TIMEOUT_S * 3)
        if thread.is_alive():
            raise RuntimeError(f"amqtt broker on {self.host}:{self.port} did not stop in {STOP_TIMEOUT_S * 3:.0f}s")

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException as exc:  # reported by start(); a thread's exception would otherwise vanish
            self._error = exc
        finally:
            ready.set()
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
        from amqtt.broker import Broker

        self._stop_requested = asyncio.Event()
        broker = Broker(
            {
                "listeners": {"default": {"type": "external", "bind": f"{self.host}:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
        )
        await broker.start()
        writers: set[asyncio.StreamWriter] = set()

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.add(writer)
            try:
                await broker.external_connected(StreamReaderAdapter(reader), StreamWriterAdapter(writer), "default")
            finally:
                writers.discard(writer)
                writer.transport.abort()

        try:
            server = await asyncio.start_server(connected, self.host, self.port, reuse_address=True)
        except OSError:
            await asyncio.wait_for(broker.shutdown(), STOP_TIMEOUT_S)
            raise
        ready.set()
        await self._stop_requested.wait()
        # like a killed broker process, seen from the clients: the listener and every connection go at once
        server.close()
        for writer in list(writers):
            writer.transport.abort()
        await server.wait_closed()
        try:
            await asyncio.wait_for(broker.shutdown(), STOP_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - whatever amqtt's shutdown did, the tasks left are cancelled below
            pass
        await _cancel_all_other_tasks()


async def _cancel_all_other_tasks() -> None:
    """Cancel and reap every task left on this loop (amqtt's per-client and broadcast tasks), bounded."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
