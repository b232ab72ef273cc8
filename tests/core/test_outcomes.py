"""The outcome table (`core.errors.outcome_of`) is the one answer to every error: HTTP status,
push ack or nack, dead letter, exit code. Pinned here for every error class, and no edge
decides an answer with an `isinstance` of its own."""

from __future__ import annotations

import ast
import inspect

import pytest

import core.errors as errors
from core.errors import (
    EXIT_RETRIABLE,
    EXIT_TERMINAL,
    FerryError,
    Outcome,
    outcome_of,
)
from tests.helpers import REPO

ERROR_CLASSES = sorted(
    (
        kind
        for _, kind in inspect.getmembers(errors, inspect.isclass)
        if issubclass(kind, FerryError)
    ),
    key=lambda kind: kind.code,
)


@pytest.mark.parametrize("kind", ERROR_CLASSES, ids=lambda kind: kind.code)
def test_every_error_class_has_one_answer_everywhere(kind: type[FerryError]) -> None:
    outcome = outcome_of(kind("x"))
    if kind.recovery is errors.Recovery.RETRIABLE:
        assert (outcome.push_ack, outcome.dead_letter, outcome.exit_code) == (
            False,
            False,
            EXIT_RETRIABLE,
        )
        assert outcome.push_status == 503 and outcome.http_status >= 429
    else:
        assert (outcome.push_ack, outcome.exit_code) == (True, EXIT_TERMINAL)
        assert outcome.push_status == 200
        # the input failed: park it; a model after a committed load failed: replaying the
        # input would load nothing
        assert outcome.dead_letter is not kind.after_commit
        # 4xx: the caller's input; 500 only for our own config (and the bare root)
        assert 400 <= outcome.http_status < 500 or kind in (FerryError, errors.ConfigError)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("model_failed", Outcome(422, push_ack=True, exit_code=2, dead_letter=False)),
        ("model_check_failed", Outcome(422, push_ack=True, exit_code=2, dead_letter=False)),
        # retried like any outage: the redelivery is the run that rebuilds the stale model
        ("model_unavailable", Outcome(503, push_ack=False, exit_code=1, dead_letter=False)),
        ("request_invalid", Outcome(400, push_ack=True, exit_code=2, dead_letter=True)),
        ("request_too_large", Outcome(413, push_ack=True, exit_code=2, dead_letter=True)),
        ("bad_data", Outcome(422, push_ack=True, exit_code=2, dead_letter=True)),
        ("internal_error", Outcome(500, push_ack=False, exit_code=1, dead_letter=False)),
        ("shutting_down", Outcome(503, push_ack=False, exit_code=1, dead_letter=False)),
    ],
)
def test_the_rows_the_edges_used_to_decide_themselves(code: str, expected: Outcome) -> None:
    (kind,) = [kind for kind in ERROR_CLASSES if kind.code == code]
    assert outcome_of(kind("x")) == expected


def error_isinstance_checks(source: str) -> list[tuple[int, str]]:
    """`isinstance(x, SomeError)` naming a FerryError subclass: an answer decided beside the
    table. (isinstance on FerryError itself only narrows a type.)"""
    subclasses = {kind.__name__ for kind in ERROR_CLASSES} - {"FerryError"}
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "isinstance"
            and len(node.args) == 2
        ):
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            found += [(node.lineno, name) for name in sorted(names & subclasses)]
    return found


def test_no_edge_decides_an_answer_with_its_own_isinstance_chain() -> None:
    found = [
        f"{path.relative_to(REPO)}:{line} {name}"
        for path in sorted((REPO / "app" / "edges").rglob("*.py"))
        for line, name in error_isinstance_checks(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "add a row (or a field) to the outcome table instead"


def test_an_isinstance_chain_is_recognised() -> None:
    source = "if isinstance(error, ModelFailedError | ModelUnavailableError):\n    pass\n"
    assert error_isinstance_checks(source) == [
        (1, "ModelFailedError"),
        (1, "ModelUnavailableError"),
    ]
