"""The embedded broker itself: both kinds stop and restart reliably with live clients attached."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from calmon_sim.broker import EmbeddedBroker

KINDS = ["amqtt"] + (["mosquitto"] if shutil.which("mosquitto") else [])
RESTARTS = 15


def open_fds() -> dict[str, str]:
    """fd number -> what it is (socket:[inode], pipe:[inode], anon_inode:[eventpoll], a path)."""
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed between listing and reading
            pass
    return fds


class Chatter:
    """A paho client that subscribes and keeps publishing QoS 1 while the broker comes and goes."""

    def __init__(self, broker: EmbeddedBroker, name: str):
        self.received = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda c, *_: c.subscribe("stress/#", qos=1)
        self.client.on_message = self._count
        self.client.connect_async(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, daemon=True)
        self._thread.start()

    def _count(self, *_: object) -> None:
        self.received += 1

    def _publish(self) -> None:
        while not self._stop.wait(0.01):
            self.client.publish("stress/x", b"payload" * 20, qos=1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.client.disconnect()
        self.client.loop_stop()


def reset_counts(chatters: list[Chatter]) -> None:
    for chatter in chatters:
        chatter.received = 0


def close_all(chatters: list[Chatter]) -> None:
    for chatter in chatters:
        chatter.close()


@pytest.mark.parametrize("kind", KINDS)
def test_broker_restarts_many_times_with_clients_attached(kind, caplog):
    caplog.set_level(logging.ERROR, logger="asyncio")
    fds_before = open_fds()
    broker = EmbeddedBroker(prefer=kind)
    assert broker.kind == kind
    broker.start()
    chatters = [Chatter(broker, f"stress-{kind}-{i}") for i in range(3)]
    try:
        for i in range(RESTARTS):
            deadline = time.monotonic() + 10
            while min(c.received for c in chatters) == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert all(c.received for c in chatters), f"restart {i}: a client got no message"
            reset_counts(chatters)
            broker.restart(down_seconds=0.05)
        # steady state: restarts leak neither broker threads nor sockets
        name = f"amqtt-broker-{broker.port}"  # not the session's shared broker, if it is amqtt too
        assert [t.name for t in threading.enumerate() if t.name == name] == ([name] if kind == "amqtt" else [])
    finally:
        close_all(chatters)
        broker.stop()
    # paho keeps a client's wake-up socket pair, and the socket of a client stopped mid-reconnect,
    # until the client is freed: no reference to any of them may outlive this point
    del chatters
    # every socket, pipe and event loop of the 15 restarts is closed once broker and clients are;
    # a busy machine may still be closing the last connections' sockets (their threads run on), so
    # the count is given a few seconds to settle: a leak stays, a late close does not
    settle = time.monotonic() + 5
    while True:
        gc.collect()
        if len(open_fds()) <= len(fds_before) or time.monotonic() > settle:
            break
        time.sleep(0.1)
    fds_after = open_fds()
    new = sorted(v for k, v in fds_after.items() if fds_before.get(k) != v)
    assert len(fds_after) <= len(fds_before), f"{len(fds_before)} fds before, {len(fds_after)} after; new: {new}"
    assert not [r for r in caplog.records if "destroyed but it is pending" in r.getMessage()]
    assert [t for t in threading.enumerate() if t.name == f"amqtt-broker-{broker.port}"] == []


@pytest.mark.parametrize("kind", KINDS)
def test_broker_stop_is_idempotent_and_frees_the_port(kind):
    broker = EmbeddedBroker(prefer=kind).start()
    broker.stop()
    broker.stop()
    import socket

    with socket.socket() as s:
        assert s.connect_ex((broker.host, broker.port)) != 0


@pytest.mark.parametrize("kind", KINDS)
def test_broker_listens_when_started_and_says_nothing_about_it(kind, caplog):
    """A client connects the moment start() returns, and starting logs no warning: the demo's first
    lines are calmon's, not amqtt's complaint about a probing connection that sent nothing."""
    caplog.set_level(logging.WARNING)
    broker = EmbeddedBroker(prefer=kind).start()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"first-{kind}")
    try:
        assert client.connect(broker.host, broker.port, keepalive=5) == mqtt.MQTT_ERR_SUCCESS
        client.loop_start()
        deadline = time.monotonic() + 10
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.is_connected()
    finally:
        client.disconnect()
        client.loop_stop()
        broker.stop()
    warned = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == []
