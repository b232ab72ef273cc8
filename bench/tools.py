"""Sling for the side-by-side run, installed offline from PyPI into bench/tools/ (gitignored).

Sling ships on PyPI as `sling-linux-amd64` (the Go binary in a wheel). For a DuckDB target
it drives DuckDB's CLI and loads DuckDB's `json` and `httpfs` extensions, which it would
download from the internet at run time; PyPI has all three (`duckdb-cli`, and
`duckdb-extension-json` / `duckdb-extension-httpfs` of the same DuckDB version), so they are
fetched with `pip download` and laid out where Sling and DuckDB look for them.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

SLING_VERSION = "1.4.11"
DUCKDB_CLI_VERSION = "1.5.5"
"""The newest DuckDB with json/httpfs extension wheels on PyPI."""
WHEELS = (
    f"sling-linux-amd64=={SLING_VERSION}",
    f"duckdb-cli=={DUCKDB_CLI_VERSION}",
    f"duckdb-extension-json=={DUCKDB_CLI_VERSION}",
    f"duckdb-extension-httpfs=={DUCKDB_CLI_VERSION}",
)


@dataclass(frozen=True)
class SlingTools:
    root: Path

    @property
    def sling(self) -> Path:
        return self.root / "sling" / "sling_linux_amd64" / "bin" / "sling-linux-amd64"

    @property
    def duckdb_cli(self) -> Path:
        return self.root / "duckdb-cli" / "duckdb_cli" / "duckdb"

    @property
    def home(self) -> Path:
        """HOME for Sling and the DuckDB CLI: ~/.duckdb/extensions holds the extensions."""
        return self.root / "home"

    def env(self) -> dict[str, str]:
        return {"DUCKDB_PATH": str(self.duckdb_cli), "HOME": str(self.home)}

    def ready(self) -> bool:
        return self.sling.exists() and self.duckdb_cli.exists()


def ensure_sling(root: Path) -> SlingTools | str:
    """The installed tools, or why they could not be installed."""
    tools = SlingTools(root)
    if tools.ready():
        return tools
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return "sling: the bench installs the linux-amd64 wheel only"
    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels), *WHEELS],
        capture_output=True,
        text=True,
        check=False,
    )
    if download.returncode != 0:
        return "sling: pip download failed: " + download.stderr.strip()[-500:]
    extensions = tools.home / ".duckdb" / "extensions" / f"v{DUCKDB_CLI_VERSION}" / "linux_amd64"
    extensions.mkdir(parents=True, exist_ok=True)
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            if wheel.name.startswith("sling_linux_amd64"):
                archive.extractall(root / "sling")
            elif wheel.name.startswith("duckdb_cli"):
                archive.extractall(root / "duckdb-cli")
            else:
                for member in archive.namelist():
                    if member.endswith(".duckdb_extension"):
                        (extensions / Path(member).name).write_bytes(archive.read(member))
    for binary in (tools.sling, tools.duckdb_cli):
        binary.chmod(0o755)
    return tools if tools.ready() else "sling: the wheels did not hold the expected binaries"
