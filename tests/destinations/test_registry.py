"""The registry: the settings pick an engine, and every engine folder offers the same names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from app.destinations.registry import ENGINES, all_engines, engine_for
from tests.helpers import duckdb_settings


def test_each_settings_kind_picks_its_engine(tmp_path: Path) -> None:
    local = engine_for(duckdb_settings(tmp_path))
    cloud = engine_for(duckdb_settings(tmp_path, destination="bigquery", bigquery_project="p"))
    assert local.name == "duckdb" and local.destination.APPEND_UNDER_LOCK
    assert cloud.name == "bigquery" and not cloud.destination.APPEND_UNDER_LOCK
    assert [engine.name for engine in all_engines()] == sorted(ENGINES)


def public_names(module: ModuleType) -> set[str]:
    """What the module itself defines at its top level (imports left out)."""
    tree = ast.parse(Path(str(module.__file__)).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(target.id for target in targets if isinstance(target, ast.Name))
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("room", ["destination", "models", "errors"])
def test_every_engine_folder_defines_the_same_names(room: str) -> None:
    """A newcomer reading one engine's module knows the other's: the same functions."""
    names = {engine.name: public_names(getattr(engine, room)) for engine in all_engines()}
    assert len({frozenset(found) for found in names.values()}) == 1, names


def test_the_registry_loads_no_engine_library_on_import() -> None:
    """Every path to a destination imports the registry, the server's start-up too: the
    engines' libraries (and dlt, sqlglot) load only when a pipeline or model is made."""
    heavy = ["dlt", "sqlglot", "duckdb", "google.cloud.bigquery"]
    code = (
        "import sys, app.destinations.registry; "
        f"print(sorted(name for name in {heavy!r} if name in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
