"""House rules no linter checks, read from the source itself (docs/architecture.md names them):
no test asserts a timing, and no function imports again what its module imports at the top.

Pure: parses files, runs nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

CODE_ROOTS = ("app", "core", "sources", "tests", "bench", "scripts")
CLOCKS = frozenset({"monotonic", "perf_counter", "time", "monotonic_ns", "perf_counter_ns"})
"""`time.<name>()` calls that read a clock."""


def python_files(*roots: str) -> Iterator[Path]:
    for root in roots:
        yield from sorted((REPO / root).rglob("*.py"))
    if "app" in roots:
        yield REPO / "main.py"


# --- no timing assertions in tests ------------------------------------------------------------


def _reads_clock(node: ast.AST, timed: set[str]) -> bool:
    """The expression reads a clock, or a name that holds a clock reading."""
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name) and inner.id in timed:
            return True
        if (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Attribute)
            and inner.func.attr in CLOCKS
            and isinstance(inner.func.value, ast.Name)
            and inner.func.value.id == "time"
        ):
            return True
    return False


def timing_assertions(source: str) -> list[int]:
    """Lines of `assert`s that bound a clock reading taken in the test (`elapsed < 10`)."""
    tree = ast.parse(source)
    timed: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _reads_clock(node.value, timed):
            timed |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    # an assert inside a polling loop bounds a wait (a hang fails instead of blocking the
    # suite); it measures nothing, so it is not a timing assertion
    polling = {
        id(inner)
        for loop in ast.walk(tree)
        if isinstance(loop, ast.While)
        for inner in ast.walk(loop)
        if isinstance(inner, ast.Assert)
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert) or id(node) in polling:
            continue
        for compare in ast.walk(node.test):
            if (
                isinstance(compare, ast.Compare)
                and any(isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE) for op in compare.ops)
                and _reads_clock(compare, timed)
            ):
                found.append(node.lineno)
                break
    return found


def test_no_test_asserts_how_long_something_took() -> None:
    """Timings belong to bench/: on a busy machine a bound on seconds fails for no fault."""
    found = [
        f"{path.relative_to(REPO)}:{line}"
        for path in python_files("tests")
        for line in timing_assertions(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "timing assertions (move them to bench/, or assert behaviour)"


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("import time\nstart = time.monotonic()\nx()\nassert time.monotonic() - start < 10\n", [4]),
        (
            "import time\nt = time.perf_counter()\nelapsed = time.perf_counter() - t\n"
            "assert elapsed < 10\n",
            [4],
        ),
        ("report = run()\nassert report.seconds['total'] > 0\n", []),
        ("import time\ndeadline = time.monotonic() + 5\nassert rows == 3\n", []),
        (
            "import time\ndeadline = time.monotonic() + 60\nwhile not ready():\n"
            "    assert time.monotonic() < deadline\n",
            [],
        ),
    ],
    ids=["direct", "through-a-name", "a-report-field", "a-deadline-not-asserted", "a-wait-bound"],
)
def test_timing_assertions_are_recognised(source: str, lines: list[int]) -> None:
    assert timing_assertions(source) == lines


# --- no redundant in-function imports ---------------------------------------------------------


def redundant_imports(source: str) -> list[tuple[int, str]]:
    """In-function imports of a module the file already imports at its top: nothing is saved
    by deferring them, and a reader looks in two places."""
    tree = ast.parse(source)
    at_top: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            at_top.add(node.module)
        elif isinstance(node, ast.Import):
            at_top |= {alias.name for alias in node.names}
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(function):
            if isinstance(inner, ast.ImportFrom) and inner.module in at_top and inner.level == 0:
                found.append((inner.lineno, str(inner.module)))
            elif isinstance(inner, ast.Import):
                found += [(inner.lineno, a.name) for a in inner.names if a.name in at_top]
    return sorted(set(found))


def test_no_function_imports_what_its_module_already_imports() -> None:
    found = [
        f"{path.relative_to(REPO)}:{line} {module}"
        for path in python_files(*CODE_ROOTS)
        for line, module in redundant_imports(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_a_redundant_import_is_recognised() -> None:
    source = "from a.b import c\n\ndef f():\n    from a.b import d\n    from a.e import g\n"
    assert redundant_imports(source) == [(4, "a.b")]


# --- tests mirror the tree ----------------------------------------------------------------------

MIRRORED_WHOLE = ("app/ops",)
"""Folders whose every module has its own test file, tests/<folder minus app>/test_<module>.py."""
DIRECT_TESTS = (
    "app/run/plan.py",
    "app/run/extract.py",
    "app/edges/push.py",
    "app/models/materialize.py",
)
"""Modules a review found tested only through others; each keeps a test file of its own."""


def mirror(module: Path) -> Path:
    """tests/<package path without the top `app`>/test_<module>.py"""
    parts = module.relative_to(REPO).parts
    folder = parts[1:-1] if parts[0] == "app" else parts[:-1]
    return REPO.joinpath("tests", *folder, f"test_{module.stem}.py")


def test_modules_have_the_test_file_that_mirrors_them() -> None:
    modules = [REPO / path for path in DIRECT_TESTS] + [
        module
        for folder in MIRRORED_WHOLE
        for module in sorted((REPO / folder).glob("*.py"))
        if module.name != "__init__.py"
    ]
    missing = [str(mirror(m).relative_to(REPO)) for m in modules if not mirror(m).exists()]
    assert missing == []
