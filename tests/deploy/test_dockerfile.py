"""The Dockerfile, read without Docker: hadolint-clean, non-root, cache-friendly, runtime-only.

`parse_dockerfile` and `build_context` are shared with test_image_smoke.py, which replays
the image from them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    dest: str


@dataclass
class Dockerfile:
    base: str = ""
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    copies: list[Copy] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    user: str = "root"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    instructions: list[tuple[str, str]] = field(default_factory=list)
    """(INSTRUCTION, arguments) in order, continuation lines joined."""


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def _exec_form(instruction: str, arguments: str) -> list[str]:
    # shell form would wrap the process in /bin/sh -c, which swallows SIGTERM from Cloud Run
    value = json.loads(arguments) if arguments.startswith("[") else None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AssertionError(f"{instruction} must use the exec (JSON) form, got {arguments!r}")
    return [str(item) for item in value]


def _parse_env(arguments: str) -> dict[str, str]:
    words = shlex.split(arguments)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}  # legacy `ENV KEY value`
    return dict(word.split("=", 1) for word in words)


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    """The subset of Dockerfile syntax this repo uses; anything else fails loudly."""
    image = Dockerfile()
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        instruction, _, arguments = line.partition(" ")
        instruction, arguments = instruction.upper(), arguments.strip()
        image.instructions.append((instruction, arguments))
        if instruction == "FROM":
            image.base = arguments.split()[0]
        elif instruction == "ENV":
            image.env.update(_parse_env(arguments))
        elif instruction == "WORKDIR":
            image.workdir = str(PurePosixPath(image.workdir) / arguments)
        elif instruction in {"COPY", "ADD"}:
            words = [word for word in shlex.split(arguments) if not word.startswith("--")]
            dest = str(PurePosixPath(image.workdir) / words[-1])
            if words[-1].endswith("/"):
                dest += "/"
            image.copies.append(Copy(tuple(words[:-1]), dest))
        elif instruction == "RUN":
            image.runs.append(arguments)
        elif instruction == "USER":
            image.user = arguments
        elif instruction == "ENTRYPOINT":
            image.entrypoint = _exec_form(instruction, arguments)
        elif instruction == "CMD":
            image.cmd = _exec_form(instruction, arguments)
        elif instruction not in {"EXPOSE", "LABEL", "ARG"}:
            raise AssertionError(f"the smoke test does not know how to replay {instruction}")
    return image


# --- .dockerignore: Docker's matcher (Go filepath.Match plus `**`, last match wins) ------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
            continue
        if pattern.startswith("**", index):
            out, index = out + ".*", index + 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", index)
            body = pattern[index + 1 : end]
            out += "[" + ("^" + body[1:] if body.startswith("^") else re.escape(body)) + "]"
            index = end
        else:
            out += re.escape(char)
        index += 1
    return re.compile(out)


@dataclass(frozen=True)
class IgnoreRule:
    pattern: str
    regex: re.Pattern[str]
    exception: bool
    """A `!pattern`: re-include what an earlier pattern excluded."""


def ignore_rules(path: Path = DOCKERIGNORE) -> list[IgnoreRule]:
    rules = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        cleaned = str(PurePosixPath(line.lstrip("!").strip().lstrip("/")))
        rules.append(IgnoreRule(cleaned, _pattern_regex(cleaned), exception))
    return rules


def is_ignored(relative: str, rules: list[IgnoreRule]) -> bool:
    """Docker excludes a path when the last pattern matching it or one of its parents says so."""
    parts = PurePosixPath(relative).parts
    candidates = ["/".join(parts[: depth + 1]) for depth in range(len(parts))]
    ignored = False
    for rule in rules:
        if any(rule.regex.fullmatch(candidate) for candidate in candidates):
            ignored = not rule.exception
    return ignored


def build_context(repo: Path = REPO) -> list[str]:
    """Files `docker build .` would send, as POSIX paths relative to the repo."""
    rules = ignore_rules(repo / ".dockerignore")

    def may_reinclude(folder: str) -> bool:
        return any(
            rule.exception and ("**" in rule.pattern or rule.pattern.startswith(folder + "/"))
            for rule in rules
        )

    files = []
    for root, folders, names in os.walk(repo):
        base = Path(root).relative_to(repo).as_posix()
        prefix = "" if base == "." else base + "/"
        # skip ignored folders (.venv, .emulators) unless an exception could reach inside
        folders[:] = sorted(
            name
            for name in folders
            if not is_ignored(prefix + name, rules) or may_reinclude(prefix + name)
        )
        files += [prefix + name for name in sorted(names) if not is_ignored(prefix + name, rules)]
    return files


# --- tests -------------------------------------------------------------------------------


def test_hadolint_is_clean() -> None:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).exists():
        raise AssertionError("hadolint not found: pip install -r requirements-dev.txt")
    result = subprocess.run(
        [binary, "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def test_runs_as_a_non_root_user() -> None:
    user = parse_dockerfile().user.split(":")[0]
    assert user not in {"", "root", "0"}


def test_base_image_is_a_pinned_slim_python() -> None:
    base = parse_dockerfile().base
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", base), base


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    instructions = parse_dockerfile().instructions
    copies = [args for name, args in instructions if name == "COPY"]
    assert copies[0].split()[0] == "requirements.txt", "copy only requirements.txt first"
    install = next(
        index
        for index, (name, args) in enumerate(instructions)
        if name == "RUN" and "pip install" in args
    )
    first_code_copy = next(
        index
        for index, (name, args) in enumerate(instructions)
        if name == "COPY" and not args.startswith("requirements.txt")
    )
    assert install < first_code_copy


def test_only_runtime_requirements_enter_the_image() -> None:
    image = parse_dockerfile()
    installs = [run for run in image.runs if "pip install" in run]
    assert installs, "the Dockerfile installs no requirements"
    for run in installs:
        assert "-r requirements.txt" in run
        assert "--no-cache-dir" in run
        assert "requirements-dev" not in run
    copied = {source for copy in image.copies for source in copy.sources}
    assert "requirements-dev.txt" not in copied
    assert "tests/" not in copied and "tests" not in copied


def test_the_service_and_the_job_share_one_entrypoint() -> None:
    image = parse_dockerfile()
    assert image.entrypoint == ["python", "main.py"]
    assert image.cmd == ["serve"]
    assert image.env.get("PYTHONUNBUFFERED") == "1"
    assert image.env.get("FERRY_LOG_FORMAT") == "json"
    assert image.env.get("FERRY_DATA_DIR", "").startswith("/tmp/")


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("main.py", True),
        ("requirements.txt", True),
        ("app/edges/server.py", True),
        ("app/edges/routes/runs.py", True),
        ("examples/data/customers/customers.jsonl.gz", True),
        ("app/__pycache__/server.cpython-311.pyc", False),
        ("app/edges/routes/__pycache__/runs.cpython-311.pyc", False),
        ("examples/local.duckdb", False),
        ("requirements-dev.txt", False),
        ("tests/edges/test_cli.py", False),
        (".venv/bin/python", False),
        (".data/local.duckdb", False),
        (".env", False),
        ("bench/generate.py", False),
    ],
)
def test_dockerignore_keeps_the_context_to_what_the_image_needs(path: str, sent: bool) -> None:
    assert is_ignored(path, ignore_rules()) is not sent


def test_every_copied_source_is_in_the_build_context() -> None:
    context = build_context()
    for copy in parse_dockerfile().copies:
        for source in copy.sources:
            prefix = source.rstrip("/")
            assert any(f == prefix or f.startswith(prefix + "/") for f in context), (
                f"COPY {source}: nothing in the build context (check .dockerignore)"
            )
