"""scripts/test.sh names everything the machine lacks, at once, before it starts (issue 22 #2)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO


@pytest.mark.skipif(shutil.which("chromium") is None, reason="as root it would install chromium")
def test_test_sh_names_every_missing_prerequisite_before_starting(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    java = fake / "java"
    java.write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
    java.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake}:{os.environ['PATH']}",
        "PUBSUB_EMULATOR_JAR": str(tmp_path / "no-such.jar"),
    }
    result = subprocess.run(
        ["bash", "scripts/test.sh"],
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
    assert any("Pub/Sub emulator jar" in line and "PUBSUB_EMULATOR_JAR" in line for line in lines)
    assert any("Java 17+" in line and "found Java 11" in line for line in lines)
    assert "ruff" not in result.stderr and ".venv" not in result.stderr  # nothing started
