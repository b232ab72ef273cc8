"""Start and stop the local Google Cloud emulators that the tests run against.

Each emulator runs as a subprocess in its own process group on 127.0.0.1, on a free port.
`run_*_emulator()` starts one, waits until it answers, yields a small frozen handle
(endpoint, env vars, official clients) and stops it by PID on exit. See ../shared/EMULATORS.md.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc  # type: ignore[import-untyped]  # no stubs in requirements-dev.txt
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient
from google.cloud.storage import Client as StorageClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

PROJECT = "test-project"
HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
EMULATORS_DIR = REPO_ROOT / ".emulators"
PUBSUB_JAR_GLOB = (
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar"
)
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
_SETUP_HINT = "run bash scripts/test.sh (it installs the BigQuery emulator)"


@dataclass(frozen=True)
class GcsEmulator:
    """A running gcp-storage-emulator; `endpoint` is like http://127.0.0.1:PORT."""

    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def client(self, project: str = PROJECT) -> StorageClient:
        return StorageClient(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
        )


@dataclass(frozen=True)
class BigQueryEmulator:
    """A running bqemulator; `endpoint` is its REST address, like http://127.0.0.1:PORT."""

    endpoint: str
    project: str = PROJECT

    @property
    def env(self) -> dict[str, str]:
        return {"BIGQUERY_EMULATOR_HOST": self.endpoint}

    def client(self) -> bigquery.Client:
        return bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
        )


@dataclass(frozen=True)
class PubSubEmulator:
    """A running Pub/Sub emulator; `host` is like 127.0.0.1:PORT (no scheme: it is gRPC)."""

    host: str
    project: str = PROJECT

    @property
    def env(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.host}

    # The clients only honour PUBSUB_EMULATOR_HOST from os.environ; a transport on an
    # insecure channel reaches the emulator without touching the process environment.
    def publisher(self) -> PublisherClient:
        channel = grpc.insecure_channel(self.host)
        return PublisherClient(transport=PublisherGrpcTransport(channel=channel))

    def subscriber(self) -> SubscriberClient:
        channel = grpc.insecure_channel(self.host)
        return SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class EmulatorProcess:
    """A subprocess in its own process group, its stdout+stderr kept in a temp log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        fd, log_name = tempfile.mkstemp(prefix=f"ferry-{name}-", suffix=".log")
        self.log_path = Path(log_name)
        # A file, not a pipe: nobody reads the output while tests run, and a full pipe blocks.
        with os.fdopen(fd, "wb") as log:
            self._popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,  # own process group: stop() reaches any child (java)
            )

    @property
    def pid(self) -> int:
        return self._popen.pid

    def output_tail(self, max_lines: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no output captured)"
        return "\n".join(lines[-max_lines:]) or "(no output)"

    def wait_ready(self, probe: Callable[[], bool], timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll `probe` until it returns True; raise RuntimeError if the process dies or stalls."""
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._popen.poll()
            if code is not None:
                raise RuntimeError(
                    f"{self.name} emulator exited with code {code} before it was ready.\n"
                    f"Output ({self.log_path}):\n{self.output_tail()}"
                )
            if probe():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} emulator was not ready after {timeout_s:.0f} s.\n"
                    f"Output ({self.log_path}):\n{self.output_tail()}"
                )
            time.sleep(0.1)

    def stop(self, keep_log: bool = False) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers, and reap the process."""
        if self._popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._popen.wait(timeout=STOP_TIMEOUT_S)
        # The leader may be gone while a child it started is still in the group.
        self._signal_group(signal.SIGKILL)
        if not keep_log:
            self.log_path.unlink(missing_ok=True)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)


def _http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    return probe


@contextlib.contextmanager
def _running(process: EmulatorProcess, probe: Callable[[], bool]) -> Iterator[None]:
    try:
        process.wait_ready(probe)
    except BaseException:
        process.stop(keep_log=True)  # the error message points at the log
        raise
    try:
        yield
    finally:
        process.stop()


@contextlib.contextmanager
def run_gcs_emulator() -> Iterator[GcsEmulator]:
    """gcp-storage-emulator, in memory. It is installed next to this interpreter."""
    binary = Path(sys.executable).parent / "gcp-storage-emulator"
    if not binary.exists():
        raise RuntimeError(
            f"{binary} not found: install requirements-dev.txt (bash scripts/test.sh does)"
        )
    port = free_port()
    argv = [str(binary), "start", f"--host={HOST}", f"--port={port}", "--in-memory"]
    handle = GcsEmulator(endpoint=f"http://{HOST}:{port}")
    process = EmulatorProcess("gcs", argv)
    with _running(process, _http_ok(f"{handle.endpoint}/")):
        yield handle


@contextlib.contextmanager
def run_bigquery_emulator(project: str = PROJECT) -> Iterator[BigQueryEmulator]:
    """bqemulator from its own venv under .emulators/ (its pins clash with the app's)."""
    binary = EMULATORS_DIR / "bq" / "bin" / "bqemulator"
    home = EMULATORS_DIR / "home"
    if not binary.exists() or not home.is_dir():
        raise RuntimeError(f"BigQuery emulator not found at {binary}: {_SETUP_HINT}")
    rest_port, grpc_port = free_port(), free_port()
    # started through our launcher: a failed synchronous query must fail, as on BigQuery
    argv = [
        str(binary.with_name("python")),
        str(Path(__file__).with_name("bigquery_emulator_launch.py")),
        "start",
        "--rest-host",
        HOST,
        "--rest-port",
        str(rest_port),
        "--grpc-host",
        HOST,
        "--grpc-port",
        str(grpc_port),
        "--project",
        project,
    ]
    # HOME holds the DuckDB spatial/avro extensions that scripts/test.sh installed offline.
    env = {**os.environ, "HOME": str(home)}
    handle = BigQueryEmulator(endpoint=f"http://{HOST}:{rest_port}", project=project)
    process = EmulatorProcess("bigquery", argv, env=env, cwd=home)
    ready_url = f"{handle.endpoint}/bigquery/v2/projects/{project}/datasets"
    with _running(process, _http_ok(ready_url)):
        yield handle


def find_pubsub_jar() -> Path:
    """The emulator jar: $PUBSUB_EMULATOR_JAR, else the one google-cloud-cli installs."""
    override = os.environ.get("PUBSUB_EMULATOR_JAR")
    if override:
        candidates = [Path(override)] if Path(override).is_file() else []
    else:
        pattern = Path(PUBSUB_JAR_GLOB)
        candidates = sorted(pattern.parent.glob(pattern.name))
    if not candidates:
        raise RuntimeError(
            f"Pub/Sub emulator jar not found ({override or PUBSUB_JAR_GLOB}). It ships with the "
            "Debian package google-cloud-cli-pubsub-emulator; install it or set "
            "PUBSUB_EMULATOR_JAR to the cloud-pubsub-emulator-*-all.jar path."
        )
    return candidates[-1]


@contextlib.contextmanager
def run_pubsub_emulator(project: str = PROJECT) -> Iterator[PubSubEmulator]:
    """The official emulator jar, run with java directly (a gcloud wrapper leaks its child)."""
    jar = find_pubsub_jar()
    port = free_port()
    argv = ["java", "-jar", str(jar), f"--host={HOST}", f"--port={port}"]
    handle = PubSubEmulator(host=f"{HOST}:{port}", project=project)
    try:
        process = EmulatorProcess("pubsub", argv)
    except FileNotFoundError as exc:
        raise RuntimeError("java not found on PATH: the Pub/Sub emulator needs Java 17+") from exc
    # The emulator answers plain HTTP "Ok" on its gRPC port once it is serving.
    with _running(process, _http_ok(f"http://{handle.host}/")):
        yield handle
