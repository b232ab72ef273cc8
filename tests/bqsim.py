"""Start ../shared/bqsim/proxy.py (BigQuery's latency and limits in front of the emulator) on
127.0.0.1, with a config of the test's own, and stop it by PID."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.emulators import HOST, REPO_ROOT, BigQueryEmulator, EmulatorProcess, _running, free_port

ZERO_LATENCY: dict[str, int] = {
    kind: 0
    for kind in ("metadata", "query", "ddl", "dml", "load", "job_get", "upload_init", "other")
}


def find_proxy() -> Path:
    """$BQSIM_PROXY, else `shared/bqsim/proxy.py` next to the repository (or its worktree)."""
    override = os.environ.get("BQSIM_PROXY")
    candidates = [Path(override)] if override else []
    candidates += [parent / "shared" / "bqsim" / "proxy.py" for parent in REPO_ROOT.parents]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise RuntimeError(
        "bqsim proxy not found (../shared/bqsim/proxy.py); set BQSIM_PROXY to its path"
    )


@dataclass(frozen=True)
class BqsimProxy:
    endpoint: str
    upstream: BigQueryEmulator

    def stats(self) -> dict[str, Any]:
        answer = requests.get(f"{self.endpoint}/__bqsim/stats", timeout=10)
        answer.raise_for_status()
        stats: dict[str, Any] = answer.json()
        return stats


@contextlib.contextmanager
def run_bqsim(
    emulator: BigQueryEmulator,
    config: dict[str, Any],
    folder: Path,
    port: int | None = None,
    log: Path | None = None,
) -> Iterator[BqsimProxy]:
    """The proxy in front of `emulator`, with `config` over its defaults (on `port` if given:
    a test restarts it with other limits where its client already points; `log`: its call
    log, one JSON line per call, with each query's statements and their target tables)."""
    port = port or free_port()
    config_path = folder / f"bqsim-{port}-{len(list(folder.glob('bqsim-*')))}.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    argv = [
        sys.executable,
        str(find_proxy()),
        "--upstream",
        emulator.endpoint,
        "--host",
        HOST,
        "--port",
        str(port),
        "--project",
        emulator.project,
        "--config",
        str(config_path),
        *(["--log", str(log)] if log else []),
    ]
    handle = BqsimProxy(f"http://{HOST}:{port}", emulator)
    process = EmulatorProcess("bqsim", argv)

    def ready() -> bool:
        try:
            return requests.get(f"{handle.endpoint}/__bqsim/stats", timeout=1).ok
        except requests.RequestException:
            return False

    with _running(process, ready):
        yield handle
