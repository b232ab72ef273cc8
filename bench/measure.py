"""Run one path in a fresh child process and measure it: whole-process seconds (imports
included), peak RSS of the process tree, and what the child itself reports.

Also: Sling (a Go binary, run as it ships), ferry's HTTP cold start, push latency on a warm
instance, and the import time of a job process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.paths import RESULT_PREFIX, Job

REPO = Path(__file__).resolve().parents[1]
CODE = Path(os.environ.get("BENCH_CODE_DIR") or REPO)
"""Where children run ferry from: BENCH_CODE_DIR=/tmp/old-export measures another version of
the code (holding this bench/) against the same data, for before/after figures."""
CHILD_ENV = {
    "RUNTIME__DLTHUB_TELEMETRY": "false",  # no network here, and not part of any path's cost
    "PYTHONUNBUFFERED": "1",
    "FERRY_LOG_FORMAT": "json",
}
POLL_S = 0.02
SAMPLE_S = 0.05
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARM_BLOCK = 8 << 20


def busy_cpu_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat).

    Busy is user + nice + system + irq + softirq + steal; iowait and idle are not.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """This (parent) process's CPU: the RSS sampler and the bench itself."""
    times = os.times()
    return times.user + times.system


def warm(paths: list[str]) -> dict[str, float]:
    """Read every input fully so it sits in the page cache before a timed path starts.

    Without it the first path on a file pays the disk read (a cold 5M CTAS took 57-66 s
    instead of 41-43 s), and that was always the limit.
    """
    started = time.perf_counter()
    total = 0
    for path in paths:
        with Path(path).open("rb", buffering=0) as handle:
            while chunk := handle.read(WARM_BLOCK):
                total += len(chunk)
    return {"warm_seconds": round(time.perf_counter() - started, 3), "warm_bytes": total}


def foreign_cores(seconds: float = 1.0) -> float:
    """Cores other processes kept busy over `seconds` (this process's own CPU excluded)."""
    busy, own = busy_cpu_seconds(), own_cpu_seconds()
    time.sleep(seconds)
    return max(0.0, busy_cpu_seconds() - busy - (own_cpu_seconds() - own)) / seconds


def wait_for_quiet(max_foreign: float, max_wait_s: float) -> dict[str, float]:
    """Before a timed path: wait (up to `max_wait_s`) until other processes use less than
    `max_foreign` cores, so a run starts quiet when the machine allows it."""
    started = time.monotonic()
    cores = foreign_cores()
    while cores > max_foreign and time.monotonic() - started < max_wait_s:
        cores = foreign_cores()
    return {
        "quiet_wait_seconds": round(time.monotonic() - started, 1),
        "foreign_cores_before": round(cores, 2),
    }


class TreeSampler:
    """Peak RSS of a process and all its descendants, sampled from /proc every 50 ms.

    Sampling can miss a spike shorter than the interval; the Python children also report
    their own VmHWM, and the larger of the two is reported.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._cpu_ticks: dict[int, int] = {}
        """Own user+system ticks of every process seen in the tree, as last sampled."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return round(self.peak_kib / 1024, 1)

    @property
    def cpu_seconds(self) -> float:
        """The tree's CPU as sampled: covers a grandchild its parent never waited for (which
        the child's rusage misses), but not a process's last 50 ms."""
        return sum(self._cpu_ticks.values()) / CLOCK_TICKS

    def _run(self) -> None:
        while not self._stop.is_set():
            tree = _tree(self.pid)
            self.peak_kib = max(self.peak_kib, sum(_rss_kib(p) for p in tree))
            for pid in tree:
                ticks = _cpu_ticks(pid)
                if ticks is not None:
                    self._cpu_ticks[pid] = ticks
            self._stop.wait(SAMPLE_S)


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_process(
    command: list[str], env: dict[str, str], timeout_s: float, cwd: Path = CODE
) -> dict[str, Any]:
    """Run a command to completion: wall seconds, tree peak, exit status, stdout/stderr."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        busy_before, own_before = busy_cpu_seconds(), own_cpu_seconds()
        started = time.perf_counter()
        child = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with TreeSampler(child.pid) as sampler:
            status, usage = _wait(child, timeout_s)
        seconds = time.perf_counter() - started
        machine_cpu = busy_cpu_seconds() - busy_before
        own_cpu = own_cpu_seconds() - own_before
        child.returncode = -1 if status is None else status  # reaped by wait4
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    tree_cpu = max(usage.ru_utime + usage.ru_stime if usage else 0.0, sampler.cpu_seconds)
    # what the rest of the machine ran meanwhile: every core's busy time minus the measured
    # tree's and the bench's own. Load average misses a short burst and counts waiting
    # processes; this is the CPU that competed with the path.
    foreign = max(0.0, machine_cpu - tree_cpu - own_cpu)
    return {
        "seconds": round(seconds, 3),
        "tree_peak_mib": sampler.peak_mib,
        # CPU seconds of the child and its reaped descendants: steadier than wall time
        # on a shared machine
        "cpu_seconds": round(tree_cpu, 2) if usage else None,
        "foreign_cpu_seconds": round(foreign, 2),
        "foreign_cores": round(foreign / seconds, 3) if seconds else 0.0,
        "status": status,
        "stdout": stdout,
        "stderr": stderr,
        # other work on the machine skews timings: keep the 1-minute load around each child
        "loadavg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }


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


def run_child(job: Job, timeout_s: float) -> dict[str, Any]:
    """Spawn `python -m bench.paths JOB`; the child's workdir is removed afterwards."""
    Path(job.workdir).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **CHILD_ENV}
    command = [sys.executable, "-m", "bench.paths", json.dumps(asdict(job))]
    process = run_process(command, env, timeout_s)
    shutil.rmtree(job.workdir, ignore_errors=True)
    result = _summary(process)
    lines = [line for line in process["stdout"].splitlines() if line.startswith(RESULT_PREFIX)]
    if lines:
        result.update(json.loads(lines[-1][len(RESULT_PREFIX) :]))
        # the tree sample may miss a short spike the child's own high-water mark saw
        result["peak_rss_mib"] = max(result["peak_rss_mib"], process["tree_peak_mib"])
    else:
        result.update({"ok": False, "error": _failure(process)})
    return result


def _summary(process: dict[str, Any]) -> dict[str, Any]:
    return {
        "seconds": process["seconds"],
        "cpu_seconds": process["cpu_seconds"],
        "foreign_cpu_seconds": process["foreign_cpu_seconds"],
        "foreign_cores": process["foreign_cores"],
        "peak_rss_mib": process["tree_peak_mib"],
        "loadavg": process["loadavg"],
        "cpus": process["cpus"],
    }


def _failure(process: dict[str, Any]) -> str:
    tail = "\n".join((process["stderr"] + process["stdout"]).strip().splitlines()[-15:])
    status = process["status"]
    reason = "timed out" if status is None else f"exit status {status}"
    return f"child {reason}; output tail:\n{tail}"


# --- Sling ------------------------------------------------------------------------------------


def run_sling(tools: Any, job: Job, timeout_s: float) -> dict[str, Any]:
    """`sling run` from the file into a DuckDB file (Sling drives DuckDB's CLI)."""
    import duckdb

    workdir = Path(job.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if job.file_format == "parquet" or len(job.inputs) != 1:
        return {"ok": False, "skipped": "sling runs on one CSV/JSONL file here"}
    database = workdir / "sling.duckdb"
    env = {
        **os.environ,
        **tools.env(),
        "SLING_DUCK": f"duckdb://{database}",
        "SLING_HOME_DIR": str(workdir / "sling-home"),
    }
    command = [
        str(tools.sling),
        "run",
        "--src-stream",
        Path(job.inputs[0]).as_uri(),
        "--tgt-conn",
        "SLING_DUCK",
        "--tgt-object",
        f"{DATASET_SLING}.{job.table}",
        "--mode",
        "full-refresh",
    ]
    if job.file_format == "jsonl":
        command += ["--src-options", '{"format": "jsonlines"}']
    process = run_process(command, env, timeout_s, cwd=workdir)
    result = _summary(process)
    if process["status"] != 0:
        result.update({"ok": False, "error": _failure(process)})
    else:
        with duckdb.connect(str(database), read_only=True) as connection:
            sql = f"select count(*) from {DATASET_SLING}.{job.table}"  # noqa: S608 - our names
            row = connection.execute(sql).fetchone()
        result.update({"ok": True, "rows_loaded": int(row[0]) if row else 0, "work_seconds": None})
    shutil.rmtree(workdir, ignore_errors=True)
    return result


DATASET_SLING = "main"


# --- HTTP service: cold start and push latency ------------------------------------------------


def _serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "main.py", "serve", "--host", "127.0.0.1"],
        cwd=CODE,
        env={**os.environ, **CHILD_ENV, **env, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def cold_start(runs: int = 3, timeout_s: float = 60.0) -> dict[str, Any]:
    """Seconds from spawning `python main.py serve` until GET /healthz answers 200."""
    from tests.emulators import free_port

    samples: list[float] = []
    ready_mib: list[float] = []
    for _ in range(runs):
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="ferry-bench-serve-") as data_dir:
            started = time.perf_counter()
            server = _serve({"FERRY_DATA_DIR": data_dir}, port)
            try:
                samples.append(_until_healthy(port, server, started, timeout_s))
                ready_mib.append(round(_rss_kib(server.pid) / 1024, 1))
            finally:
                _stop(server)
    return {
        "median_seconds": round(statistics.median(samples), 3),
        "samples": [round(s, 3) for s in samples],
        "rss_at_ready_mib": statistics.median(ready_mib),
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


def push_latency(
    pipelines_file: Path, objects: list[Path], workdir: Path, warm_up: int = 2
) -> dict[str, Any]:
    """POST /runs {pipeline, source: one small object} to a warm DuckDB instance, one object
    per request (each a new object, so each loads); seconds per answer, warm-ups dropped."""
    from tests.emulators import free_port

    port = free_port()
    data_dir = workdir / "push-data"
    env = {
        "FERRY_DATA_DIR": str(data_dir),
        "FERRY_PIPELINES_FILE": str(pipelines_file),
        "FERRY_DESTINATION": "duckdb",
    }
    server = _serve(env, port)
    samples: list[float] = []
    statuses: list[str] = []
    cpu_start = 0.0
    try:
        _until_healthy(port, server, time.perf_counter(), 60.0)
        for index, obj in enumerate(objects):
            if index == warm_up:
                cpu_start = _cpu_seconds(server.pid)
            body = json.dumps({"pipeline": "bench", "source": str(obj)}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/runs",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                    answer = json.loads(response.read())
            except urllib.error.HTTPError as error:
                answer = {"status": f"http {error.code}: {error.read()[:300]!r}"}
            seconds = time.perf_counter() - started
            statuses.append(str(answer.get("status")))
            if index >= warm_up:
                samples.append(seconds)
        rss = round(_rss_kib(server.pid) / 1024, 1)
        cpu = _cpu_seconds(server.pid) - cpu_start
    finally:
        _stop(server)
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "median_seconds": round(statistics.median(samples), 3) if samples else None,
        "p90_seconds": round(sorted(samples)[int(len(samples) * 0.9)], 3) if samples else None,
        "samples": [round(s, 3) for s in samples],
        "statuses": sorted(set(statuses)),
        "warm_up": warm_up,
        "server_rss_mib": rss,
        # the server's own CPU per measured request: steadier than wall time when the
        # machine is shared
        "cpu_seconds_per_request": round(cpu / max(len(samples), 1), 3),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- job process import time ------------------------------------------------------------------

_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


def job_import_time(pipelines_file: Path, source: Path, workdir: Path) -> dict[str, Any]:
    """`python -X importtime main.py run bench --source ONE_SMALL_FILE`: seconds spent in
    imports over the whole job process (an upper bound of imports before work starts),
    next to the process's wall time."""
    env = {
        **os.environ,
        **CHILD_ENV,
        "FERRY_DATA_DIR": str(workdir / "job-data"),
        "FERRY_PIPELINES_FILE": str(pipelines_file),
        "FERRY_DESTINATION": "duckdb",
        "FERRY_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-X", "importtime", "main.py", "run", "bench"]
    command += ["--source", str(source)]
    process = run_process(command, env, 300.0)
    shutil.rmtree(workdir / "job-data", ignore_errors=True)
    total_us = 0
    heaviest: list[tuple[int, str]] = []
    for line in process["stderr"].splitlines():
        match = _IMPORT_LINE.match(line)
        if match and not match[3]:  # top-level imports only: their cumulative time
            total_us += int(match[2])
            heaviest.append((int(match[2]), match[4]))
    heaviest.sort(reverse=True)
    return {
        "ok": process["status"] == 0,
        "import_seconds": round(total_us / 1e6, 3),
        "process_seconds": process["seconds"],
        "peak_rss_mib": process["tree_peak_mib"],
        "heaviest": [f"{name} {us / 1e6:.2f}s" for us, name in heaviest[:8]],
        "error": None if process["status"] == 0 else _failure(process),
    }
