"""scripts/test.sh names everything the machine lacks, at once, before it starts (issue 22 #2)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.helpers import REPO

TOOLS = ("bash", "sed", "head", "cat", "sha256sum", "cut", "id", "dirname", "chromium")
"""What the script itself uses; nothing else is on its PATH (no apt-get: it installs nothing)."""


def test_test_sh_names_every_missing_prerequisite_before_starting(tmp_path: Path) -> None:
    path = tmp_path / "bin"
    path.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (path / tool).symlink_to(found)
    fakes = {
        "java": "echo 'openjdk version \"11.0.2\" 2019-01-15' >&2",
        "python3": "exit 1",  # an interpreter older than 3.11
    }
    for name, body in fakes.items():
        (path / name).write_text(f"#!/bin/sh\n{body}\n")
        (path / name).chmod(0o755)
    env = {"PATH": str(path), "HOME": str(tmp_path), "PUBSUB_EMULATOR_JAR": str(tmp_path / "x.jar")}
    result = subprocess.run(
        [str(path / "bash"), "scripts/test.sh"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert "ERROR: missing before the tests can start:" in lines
    assert any(line.startswith("  - Python 3.11+") for line in lines)
    assert any("Pub/Sub emulator jar" in line and "PUBSUB_EMULATOR_JAR" in line for line in lines)
    assert any("Java 17+" in line and "found Java 11" in line for line in lines)
    if shutil.which("chromium") is None:
        assert any("chromium" in line for line in lines)
    assert "ruff" not in result.stderr and "creating" not in result.stderr  # nothing started
