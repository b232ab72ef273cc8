"""`pip install .` gives the `ferry` command (issue 22): the wheel declares the console script,
the runtime pins of requirements.txt, the packages and the demo file the default points at."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers import REPO


def test_the_wheel_has_the_ferry_command_the_pins_and_the_demo(tmp_path: Path) -> None:
    source = tmp_path / "src"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:  # a copy, so the build leaves nothing in the work tree
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("ferry-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(meta).decode()
        entry_points = archive.read(meta.replace("METADATA", "entry_points.txt")).decode()
    assert "ferry = app.edges.cli:main" in entry_points
    pins = [
        line
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    for pin in pins:
        assert f"Requires-Dist: {pin.split('[')[0].split('==')[0]}" in metadata
    for module in ("app/edges/cli.py", "core/spec.py", "sources/files/readers.py"):
        assert module in names
    for data in (
        "examples/pipelines.yaml",
        "examples/data/orders/orders-2026-11-01.csv",
        "examples/models/orders_curated.sql",
        "examples/transforms.py",
    ):
        assert data in names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
