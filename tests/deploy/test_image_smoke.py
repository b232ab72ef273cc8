"""The image, without a Docker engine: replay the Dockerfile and run its command.

A fresh venv gets requirements.txt only (no test tooling); a temp root gets exactly what the
Dockerfile copies, filtered by .dockerignore; the process starts from ENTRYPOINT + CMD with
the Dockerfile's ENV, as a non-root user when we are root. That catches a dev-only import or
a file the image forgot. Not covered: the base image's OS packages and the real `useradd`.
The first run builds the venv (about a minute); later runs reuse it until requirements.txt
changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import requests

from tests.deploy.test_dockerfile import REPO, Dockerfile, build_context, parse_dockerfile

RUNTIME_VENV = REPO / ".emulators" / "runtime-venv"
"""Process start to the first healthy response (the issue's bound for this machine)."""
DEV_ONLY_MODULES = ("pytest", "mypy", "ruff", "gcp_storage_emulator", "httpx2")
IMAGE_UID = 10001


@dataclass(frozen=True)
class ImageRoot:
    """A directory standing in for the image's `/`, plus how to start a process in it."""

    root: Path
    dockerfile: Dockerfile
    python: Path
    home: Path

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def env(self, **extra: str) -> dict[str, str]:
        environment = {
            "PATH": f"{self.python.parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
        }
        for key, value in self.dockerfile.env.items():
            # an absolute path inside the image lives under our stand-in root
            environment[key] = str(self.path(value)) if value.startswith("/") else value
        return environment | extra

    def argv(self, *args: str) -> list[str]:
        command = [*self.dockerfile.entrypoint, *(args or self.dockerfile.cmd)]
        if command[0] in {"python", "python3"}:
            command[0] = str(self.python)  # what PATH resolves to inside the image
        return command

    def popen(self, args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[str]:
        as_image_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            as_image_user = {"user": IMAGE_UID, "group": IMAGE_UID, "extra_groups": []}
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.path(self.dockerfile.workdir),
            env=env,
            text=True,
            **as_image_user,
            **kwargs,
        )


# --- the runtime venv: requirements.txt only, cached by its hash -----------------------------


def _usable_by_others(executable: Path) -> bool:
    """Can a non-root user run this interpreter (every parent folder searchable)?"""
    real = executable.resolve()
    if not real.is_file() or not real.stat().st_mode & stat.S_IXOTH:
        return False
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in real.parents)


def _base_interpreter() -> Path:
    """A Python 3.11 the image user can run: ours, or the system's when ours is under /root."""
    ours = Path(getattr(sys, "_base_executable", sys.executable))
    if os.geteuid() != 0 or _usable_by_others(ours):
        return ours
    for candidate in (Path("/usr/local/bin/python3.11"), Path("/usr/bin/python3.11")):
        if _usable_by_others(candidate):
            return candidate
    raise AssertionError(
        f"{ours} is not executable by uid {IMAGE_UID} and no system python3.11 is: "
        "install python3.11 + python3.11-venv, or run the tests as a non-root user"
    )


def _requirements_key(interpreter: Path) -> str:
    digest = hashlib.sha256((REPO / "requirements.txt").read_bytes())
    digest.update(str(interpreter.resolve()).encode())
    return digest.hexdigest()


def runtime_python() -> Path:
    """A venv with requirements.txt and nothing else; built once per requirements change."""
    python = RUNTIME_VENV / "bin" / "python"
    marker = RUNTIME_VENV / ".ferry-installed"
    interpreter = _base_interpreter()
    want = _requirements_key(interpreter)
    RUNTIME_VENV.parent.mkdir(parents=True, exist_ok=True)
    with (RUNTIME_VENV.parent / "runtime-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest process may be building it
        if marker.is_file() and marker.read_text() == want and python.exists():
            return python
        shutil.rmtree(RUNTIME_VENV, ignore_errors=True)
        subprocess.run([str(interpreter), "-m", "venv", str(RUNTIME_VENV)], check=True)
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", str(REPO / "requirements.txt")],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"pip install -r requirements.txt failed:\n{result.stderr}")
        marker.write_text(want)
    return python


# --- the image root -------------------------------------------------------------------------


def _copy_into(root: Path, dockerfile: Dockerfile, context: list[str]) -> None:
    for copy in dockerfile.copies:
        for source in copy.sources:
            prefix = source.rstrip("/")
            matched = [f for f in context if f == prefix or f.startswith(prefix + "/")]
            if not matched:
                raise AssertionError(f"COPY {source}: not in the build context")
            for relative in matched:
                if relative == prefix and not copy.dest.endswith("/"):
                    target = PurePosixPath(copy.dest)
                elif relative == prefix:
                    target = PurePosixPath(copy.dest) / PurePosixPath(relative).name
                else:  # a directory's contents go into dest, as Docker's COPY dir/ dest/
                    target = PurePosixPath(copy.dest) / PurePosixPath(relative).relative_to(prefix)
                destination = root / str(target).lstrip("/")
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / relative, destination)


def _replay_compileall(image: ImageRoot) -> None:
    """The image compiles bytecode at build time; cold start depends on it."""
    for run in image.dockerfile.runs:
        for command in run.split("&&"):
            words = shlex.split(command)
            if words[:3] == ["python", "-m", "compileall"]:
                subprocess.run(
                    [str(image.python), *words[1:]],
                    cwd=image.path(image.dockerfile.workdir),
                    check=True,
                )


def _readable_by_everyone(path: Path) -> None:
    for folder in (path, *path.rglob("*")):
        if folder.is_dir():
            folder.chmod(0o755)


@pytest.fixture(scope="module")
def image() -> Iterator[ImageRoot]:
    dockerfile = parse_dockerfile()
    assert any("-r requirements.txt" in run for run in dockerfile.runs)
    python = runtime_python()
    # not pytest's tmp_path: its parent is private to root and the image user must get in
    base = Path(tempfile.mkdtemp(prefix="ferry-image-"))
    try:
        root = base / "rootfs"
        _copy_into(root, dockerfile, build_context())
        home = root / "home" / "ferry"
        home.mkdir(parents=True)
        (root / "tmp").mkdir()
        _readable_by_everyone(base)
        (root / "tmp").chmod(0o777 | stat.S_ISVTX)
        if os.geteuid() == 0:
            os.chown(home, IMAGE_UID, IMAGE_UID)
        built = ImageRoot(root, dockerfile, python, home)
        _replay_compileall(built)
        yield built
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- tests ----------------------------------------------------------------------------------


def test_runtime_venv_has_no_test_tooling(image: ImageRoot) -> None:
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    result = subprocess.run(
        [str(image.python), "-c", probe, *DEV_ONLY_MODULES],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_image_root_holds_the_code_and_no_test_or_bench_files(image: ImageRoot) -> None:
    app = image.path(image.dockerfile.workdir)
    files = {p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file()}
    expected = {"main.py", "requirements.txt", "app/edges/server.py", "examples/pipelines.yaml"}
    assert expected <= files
    sources = {f for f in files if "__pycache__" not in f}
    assert not {f for f in sources if f.startswith(("tests/", "bench/", "scripts/", "."))}


def test_service_answers_healthz_and_runs(image: ImageRoot, tmp_path: Path) -> None:
    port = _free_port()
    log_path = tmp_path / "service.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        process = image.popen([], image.env(PORT=str(port)), stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        # cold start is measured by the benchmark (bench/), never asserted here
        healthy = False
        while time.monotonic() - started < 30:
            if process.poll() is not None:
                raise AssertionError(
                    f"service exited {process.returncode}:\n{log_path.read_text()}"
                )
            try:
                if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    healthy = True
                    break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.02)
        assert healthy, f"never healthy:\n{log_path.read_text()[-3000:]}"

        response = requests.post(f"{base_url}/runs", json={"pipeline": "orders"}, timeout=120)
        assert response.status_code == 200, response.text
        assert response.json()["tables"]["orders"] > 0
    finally:
        process.terminate()
        process.wait(timeout=20)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert lines, "FERRY_LOG_FORMAT=json from the Dockerfile should give JSON log lines"
    assert all("severity" in line for line in lines)


def test_job_form_runs_a_pipeline_and_prints_the_report(image: ImageRoot) -> None:
    process = image.popen(
        ["run", "customers"],
        image.env(CLOUD_RUN_JOB="ferry-job", FERRY_TERMINAL_EXIT_CODE="0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    assert process.returncode == 0, stderr[-3000:]
    report = json.loads(stdout)
    assert report["pipeline"] == "customers"
    assert report["tables"]["customers"] > 0
