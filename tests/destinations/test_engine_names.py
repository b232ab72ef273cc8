"""No engine question outside app/destinations: a comparison with an engine's name there
(`settings.destination_kind == "bigquery"`) means a function is missing from the engine
folders, and so does an import of an engine's library. import-linter cannot see string
comparisons, nor name `google.cloud.bigquery` (it keeps external packages as their top-level
name, `google`); this test can. The `duckdb` import rule is also an import-linter contract."""

from __future__ import annotations

import ast
from pathlib import Path

from app.destinations.registry import ENGINES

ROOT = Path(__file__).resolve().parents[2]
ENGINE_NAMES = set(ENGINES)
ENGINE_LIBRARIES = ("duckdb", "google.cloud.bigquery")
CHECKED = ["app", "core", "sources", "main.py"]
INSIDE = ROOT / "app" / "destinations"
PARSES_THE_SETTING = {ROOT / "core" / "settings.py"}
"""Where FERRY_DESTINATION is read and validated: it names the engines by definition."""
PARSES_JSON = ROOT / "sources" / "files" / "duckdb_json.py"
"""DuckDB as the JSON-lines parser of the files source, not as a destination (the import-linter
contract names the same exception)."""


def engine_comparisons(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for operand in operands:
                values = (
                    operand.elts
                    if isinstance(operand, ast.Tuple | ast.List | ast.Set)
                    else [operand]
                )
                if any(
                    isinstance(value, ast.Constant) and value.value in ENGINE_NAMES
                    for value in values
                ):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
                    break
        if isinstance(node, ast.MatchValue):
            value = node.value
            if isinstance(value, ast.Constant) and value.value in ENGINE_NAMES:
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def engine_imports(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        if any(
            module == library or module.startswith(library + ".")
            for module in modules
            for library in ENGINE_LIBRARIES
        ):
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def checked_files() -> list[Path]:
    files: list[Path] = []
    for name in CHECKED:
        path = ROOT / name
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return [path for path in files if INSIDE not in path.parents and path not in PARSES_THE_SETTING]


def test_no_engine_name_is_compared_outside_app_destinations() -> None:
    assert len(checked_files()) > 50  # the walk found the tree
    found = [where for path in checked_files() for where in engine_comparisons(path)]
    assert found == [], "ask the engine through app.destinations.registry instead"


def test_no_engine_library_is_imported_outside_app_destinations() -> None:
    files = checked_files() + sorted(PARSES_THE_SETTING)
    found = [where for path in files if path != PARSES_JSON for where in engine_imports(path)]
    assert found == [], "move the code into the engine's folder under app/destinations"


def test_the_check_sees_a_comparison(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        'def local(kind: str) -> bool:\n    return kind == "duckdb"\n'
        'def cloud(kind: str) -> bool:\n    return kind in ("bigquery",)\n'
    )
    assert engine_comparisons(planted, tmp_path) == ["planted.py:2", "planted.py:4"]


def test_the_check_sees_an_engine_library_import(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "import duckdb\n"
        "from google.cloud import bigquery, storage\n"
        "from google.cloud.bigquery.dbapi import exceptions\n"
        "from google.cloud import storage as gcs\n"
    )
    assert engine_imports(planted, tmp_path) == ["planted.py:1", "planted.py:2", "planted.py:3"]
