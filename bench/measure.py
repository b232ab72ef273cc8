"""Run one path in a fresh child process and measure it; time ferry's HTTP cold start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.paths import RESULT_PREFIX, Job

REPO = Path(__file__).resolve().parents[1]
CHILD_ENV = {
    "RUNTIME__DLTHUB_TELEMETRY": "false",  # no network here, and not part of any path's cost
    "PYTHONUNBUFFERED": "1",
    "FERRY_LOG_FORMAT": "json",
}
POLL_S = 0.02


def run_child(job: Job, timeout_s: float) -> dict[str, Any]:
    """Spawn `python -m bench.paths`, reap it with wait4, parse its result.

    The child's own VmHWM is the peak RSS we report: wait4's ru_maxrss survives exec on
    Linux, so it is never below this (parent) process's RSS at fork time.

    The child's workdir (its DuckDB file and dlt working dir) is removed afterwards.
    """
    Path(job.workdir).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **CHILD_ENV}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.paths", json.dumps(asdict(job))],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        status, usage = _wait(child, timeout_s)
        process_seconds = time.perf_counter() - started
        child.returncode = status  # reaped by wait4: keep Popen from waiting again
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    shutil.rmtree(job.workdir, ignore_errors=True)
    result: dict[str, Any] = {
        "process_seconds": round(process_seconds, 3),
        # ru_maxrss is in KiB on Linux
        "wait4_maxrss_mib": round(usage.ru_maxrss / 1024, 1) if usage else None,
        # other work on the machine skews timings: keep the 1-minute load around each child
        "loadavg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if lines:
        result.update(json.loads(lines[-1][len(RESULT_PREFIX) :]))
    else:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        reason = "timed out" if status is None else f"exit status {status}"
        result.update({"ok": False, "error": f"child {reason}; stderr tail:\n{tail}"})
    return result


def _wait(child: subprocess.Popen[bytes], timeout_s: float) -> tuple[int | None, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(status), usage
        if time.monotonic() > deadline:
            os.killpg(child.pid, signal.SIGKILL)
            _, status, usage = os.wait4(child.pid, 0)
            return None, usage
        time.sleep(POLL_S)


def cold_start(runs: int = 3, timeout_s: float = 60.0) -> dict[str, Any]:
    """Seconds from spawning `python main.py serve` until GET /healthz answers 200."""
    from tests.emulators import free_port

    samples: list[float] = []
    for _ in range(runs):
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="ferry-bench-serve-") as data_dir:
            env = {**os.environ, **CHILD_ENV, "PORT": str(port), "FERRY_DATA_DIR": data_dir}
            started = time.perf_counter()
            server = subprocess.Popen(
                [sys.executable, "main.py", "serve"],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                samples.append(_until_healthy(port, server, started, timeout_s))
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait()
    return {
        "median_seconds": round(statistics.median(samples), 3),
        "samples": [round(s, 3) for s in samples],
    }


def _until_healthy(
    port: int, server: subprocess.Popen[bytes], started: float, timeout_s: float
) -> float:
    url = f"http://127.0.0.1:{port}/healthz"
    while time.perf_counter() - started < timeout_s:
        if server.poll() is not None:
            raise RuntimeError(f"main.py serve exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(POLL_S)
    raise RuntimeError(f"/healthz did not answer 200 within {timeout_s:.0f}s")
