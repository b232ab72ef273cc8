"""The docs run as written (issue 22): every shell block of README.md and docs/*.md is either
run here, in order, in a copy of the repository set up like a fresh clone after the set-up
commands, or marked by its info string as needing a cloud project (`bash cloud`), as set-up
(`bash setup`) or as taking minutes (`bash long`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SHELLS = {"bash", "sh", "shell", "console"}
MARKERS = {"cloud", "setup", "long"}
"""`bash cloud`: needs a Google Cloud project; `bash setup`: installs things; `bash long`:
runs as written but takes minutes. Every other shell block is run by this test."""
BARE_TOOLS = re.compile(r"^\s*(python3?|pytest|mypy|ruff|lint-imports|pip)\s")
"""After the set-up commands these live in .venv: a block says `.venv/bin/...` (or `ferry`)."""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    marker: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        words = match.group(1).split()
        line = text.count("\n", 0, match.start()) + 1
        found.append(
            Block(path, line, words[0] if words else "", " ".join(words[1:]), match.group(2))
        )
    return found


def runnable(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.language in SHELLS and not b.marker]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_block_says_what_it_is(path: Path) -> None:
    for block in blocks(path):
        assert block.language, f"{block.where}: a fenced block needs an info string (bash, text…)"
        if block.language in SHELLS:
            assert block.marker in MARKERS | {""}, f"{block.where}: unknown marker {block.marker}"
            if block.marker != "setup":
                for line in block.code.splitlines():
                    assert not BARE_TOOLS.match(line), (
                        f"{block.where}: '{line.strip()}' needs .venv/bin/ (or the ferry command)"
                    )


def test_the_docs_have_runnable_blocks() -> None:
    assert len(runnable(REPO / "README.md")) >= 5
    assert runnable(REPO / "docs" / "models.md")


def fresh_clone(folder: Path) -> Path:
    """The tracked files, a .venv holding the ferry command of this copy (the packages come
    from the test's own environment) and the emulators the set-up installed."""
    copy = folder / "ferry"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    venv = copy / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (purelib,) = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "_ferry_packages.pth").write_text(purelib + "\n")
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-e",
            str(copy),
        ],
        check=True,
        capture_output=True,
    )
    here = Path(sys.executable).parent
    for tool in here.iterdir():  # the emulators' and linters' commands, as the set-up left them
        if (
            not tool.name.startswith(("pip", "activate"))
            and not (venv / "bin" / tool.name).exists()
        ):
            (venv / "bin" / tool.name).symlink_to(tool)
    if (REPO / ".emulators").exists():
        (copy / ".emulators").symlink_to((REPO / ".emulators").resolve())
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in DOCS if runnable(p)], ids=lambda p: p.name)
def test_the_shell_blocks_run_as_written(path: Path, tmp_path: Path) -> None:
    copy = fresh_clone(tmp_path)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRY_", "BIGQUERY_", "STORAGE_", "PUBSUB_", "CLOUD_RUN_"))
        and key not in ("PORT", "VIRTUAL_ENV")
    }
    for block in runnable(path):
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.code],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, (
            f"{block.where} failed ({result.returncode}):\n{block.code}\n"
            f"--- stdout\n{result.stdout[-2000:]}\n--- stderr\n{result.stderr[-3000:]}"
        )
