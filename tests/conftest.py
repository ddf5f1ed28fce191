"""Shared fixtures: the real scenes folder and a real MQTT broker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from calmon_sim.broker import EmbeddedBroker
from calmon_sim.scene import default_scenes_dir

REPO = Path(__file__).resolve().parent.parent


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
