"""Shared fixtures. Emulator start/stop logic lives in tests/emulators.py."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators import (
    BigQueryEmulator,
    GcsEmulator,
    PubSubEmulator,
    run_bigquery_emulator,
    run_gcs_emulator,
    run_pubsub_emulator,
)

pytest_plugins = ["tests.oidc"]

# --- no network past 127.0.0.1 -------------------------------------------------------------

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
LOOPBACK = ("127.", "::1", "localhost")
_outside_calls: list[str] = []
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _address_host(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


def _checked(address: Any) -> None:
    host = _address_host(address)
    if not host.startswith(LOOPBACK) and not host.startswith("/"):
        _outside_calls.append(host)
        raise OSError(f"tests reach 127.0.0.1 only; this one tried {host}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _checked(address)
    _connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _checked(address)
    return _connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]


@pytest.fixture(autouse=True)
def _no_network_past_loopback() -> Iterator[None]:
    """A library that swallows the refused connect (telemetry does) still fails the test."""
    before = len(_outside_calls)
    yield
    assert _outside_calls[before:] == [], "a test tried to reach past 127.0.0.1"


# --- emulators: one process per session, started on first use -----------------------------


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    with run_gcs_emulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[BigQueryEmulator]:
    with run_bigquery_emulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    with run_pubsub_emulator() as emulator:
        yield emulator


# --- env vars pointing client libraries at an emulator, for one test only ------------------


@pytest.fixture
def gcs_env(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> GcsEmulator:
    for name, value in gcs_emulator.env.items():
        monkeypatch.setenv(name, value)
    return gcs_emulator


@pytest.fixture
def bigquery_env(
    bigquery_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch
) -> BigQueryEmulator:
    for name, value in bigquery_emulator.env.items():
        monkeypatch.setenv(name, value)
    return bigquery_emulator


@pytest.fixture
def pubsub_env(pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> PubSubEmulator:
    for name, value in pubsub_emulator.env.items():
        monkeypatch.setenv(name, value)
    return pubsub_emulator


# --- isolation on shared emulators ----------------------------------------------------------


@pytest.fixture
def unique_name() -> str:
    """A short lowercase name, valid as a bucket, dataset, topic or table name."""
    return f"t{uuid.uuid4().hex[:10]}"


# --- markers: `scripts/test.sh --fast` runs what needs no emulator and no subprocess suite --

EMULATOR_FIXTURES = frozenset(
    {"gcs_emulator", "bigquery_emulator", "pubsub_emulator"}
    | {"gcs_env", "bigquery_env", "pubsub_env"}
)
SLOW_FOLDERS = ("deploy", "e2e", "faults")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests_root = Path(__file__).resolve().parent
    for item in items:
        if EMULATOR_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.emulators)
        relative = item.path.resolve().relative_to(tests_root)
        if relative.parts and relative.parts[0] in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)
