"""Run `python main.py serve` as Cloud Run would: a process on $PORT, JSON logs to a file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.emulators import free_port
from tests.helpers import REPO


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def push_outcomes(self) -> list[str]:
        return [str(line["push_status"]) for line in self.logs() if "push_status" in line]

    def wait_for_outcomes(self, count: int, timeout: float = 60.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            outcomes = self.push_outcomes()
            if len(outcomes) >= count:
                return outcomes
            time.sleep(0.2)
        raise AssertionError(f"saw {self.push_outcomes()} after {timeout}s, wanted {count}")


CLOUD_RUN_GRACE_SECONDS = 10.0
"""Cloud Run sends SIGKILL this long after SIGTERM (instance shutdown, scale-in, deploy)."""


def stop_like_cloud_run(process: subprocess.Popen[bytes]) -> bool:
    """SIGTERM, then SIGKILL once the grace period is over, as Cloud Run does. True if the
    process had to be killed: whatever it had not answered or committed by then is lost,
    which is what a test then looks at (not how long the stop took)."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=CLOUD_RUN_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True
    return False


@contextmanager
def run_service(env: dict[str, str], log_path: Path) -> Iterator[ServiceProcess]:
    port = free_port()
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRY_", "BIGQUERY_", "STORAGE_", "PUBSUB_"))
    }
    environment |= {"PORT": str(port), "FERRY_LOG_FORMAT": "json", **env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "main.py"), "serve", "--host", "127.0.0.1"],
            cwd=REPO,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = ServiceProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"service exited: {log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{service.base_url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"service not healthy: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield service
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
