"""A model's checks as SQL queries over its new rows, rendered for the engine.

The same vocabulary as the pipelines' quality gates; each check is one query that finds the
offending rows, so nothing is read back into Python but a count and a few examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from app.destinations.warehouse import Warehouse
from core.model_spec import ModelChecks

EXAMPLES = 5

Rows = Sequence[Sequence[Any]]


@dataclass(frozen=True)
class CheckQuery:
    check: str
    column: str | None
    sql: str
    problem: Callable[[Rows], str | None]
    """The failure, in words, from the query's rows; None when the check passed."""


def check_queries(
    checks: ModelChecks,
    relation: str,
    warehouse: Warehouse,
    unique_key: Sequence[str] = (),
) -> list[CheckQuery]:
    """Queries for every declared check on `relation` (a table in the warehouse's dataset).

    `unique_key`: an incremental model's merge key, checked unique on the new rows
    (duplicates would make the merge ambiguous).
    """
    table = warehouse.table(relation)
    queries: list[CheckQuery] = []

    def add(check: str, column: str | None, query: exp.Expression, problem: Any) -> None:
        queries.append(CheckQuery(check, column, warehouse.render(query), problem))

    for column in checks.not_null:
        add(
            "not_null",
            column,
            _count(table).where(_col(column).is_(exp.null())),
            _counted("null value(s)"),
        )
    keys = [list(checks.unique)] if checks.unique else []
    if unique_key and list(unique_key) not in keys:
        keys.append(list(unique_key))
    for key in keys:
        columns = [_col(column) for column in key]
        duplicates = (
            exp.select(*columns)
            .from_(table.copy())
            .group_by(*columns)
            .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1)))
        )
        add(
            "unique",
            ", ".join(key),
            exp.select(exp.Count(this=exp.Star())).from_(duplicates.subquery("d")),
            _counted("duplicated key value(s)"),
        )
    for column, accepted in checks.accepted_values.items():
        outside = exp.and_(
            exp.not_(_col(column).is_(exp.null())),
            exp.not_(_col(column).isin(*[exp.convert(value) for value in accepted])),
        )
        add(
            "accepted_values",
            column,
            exp.select(_col(column))
            .from_(table.copy())
            .where(outside)
            .group_by(_col(column))
            .order_by(_col(column))
            .limit(EXAMPLES),
            _examples,
        )
    for column, bound in checks.range.items():
        limits: list[exp.Expression] = []
        if bound.min is not None:
            limits.append(exp.LT(this=_col(column), expression=exp.convert(bound.min)))
        if bound.max is not None:
            limits.append(exp.GT(this=_col(column), expression=exp.convert(bound.max)))
        if limits:
            add(
                "range",
                column,
                _count(table).where(exp.or_(*limits)),
                _counted(f"value(s) outside [{bound.min}, {bound.max}]"),
            )
    return queries


def _col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _count(table: exp.Table) -> exp.Select:
    return exp.select(exp.Count(this=exp.Star())).from_(table.copy())


def _counted(what: str) -> Callable[[Rows], str | None]:
    def problem(rows: Rows) -> str | None:
        found = int(rows[0][0]) if rows else 0
        return f"{found} {what}" if found else None

    return problem


def _examples(rows: Rows) -> str | None:
    return f"unexpected values {[row[0] for row in rows]}" if rows else None
