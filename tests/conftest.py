"""Shared fixtures. Emulator start/stop logic lives in tests/emulators.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

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
