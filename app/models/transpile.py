"""One SQL, two engines: a model's BigQuery `SELECT`, qualified and rendered for either engine.

Models are written in BigQuery's dialect (the production target). sqlglot parses them once;
for DuckDB (the embedded default) sqlglot transpiles the tree, and what it cannot translate
is found at validation, not in the middle of a run:
- constructs sqlglot itself refuses (`unsupported_level=RAISE`), e.g. `LIMIT` inside
  `ARRAY_AGG`;
- functions it passes through untranslated that DuckDB does not have (`NET.HOST`,
  `FARM_FINGERPRINT`): DuckDB's own parser lists the functions the translation calls, and
  each is looked up in DuckDB's catalog of functions (each engine's
  `models.unknown_functions`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlglot
from sqlglot import ErrorLevel, exp
from sqlglot.errors import ParseError, UnsupportedError

from app.destinations.registry import all_engines
from app.destinations.warehouse import Warehouse
from core.errors import ConfigError

SOURCE_DIALECT = "bigquery"


@dataclass(frozen=True)
class ModelQuery:
    """A model's parsed SELECT and the tables it reads (its upstream)."""

    name: str
    query: exp.Query
    upstream: frozenset[str]
    ctes: frozenset[str]
    sql: str = ""
    """The model's own SQL, as written (error messages point at its lines)."""

    def qualified(self, warehouse: Warehouse) -> exp.Query:
        """The SELECT with every table reference moved into the configured dataset."""
        query = self.query.copy()
        for table in _table_refs(query, self.ctes):
            qualified = warehouse.table(table.name)
            table.set("db", qualified.args.get("db"))
            table.set("catalog", qualified.args.get("catalog"))
        return query

    def render(self, warehouse: Warehouse) -> str:
        return warehouse.render(self.qualified(warehouse))


def model_error(name: str, problem: str) -> ConfigError:
    return ConfigError(f"model '{name}': {problem}", details={"model": name})


def parse_model(name: str, sql: str) -> ModelQuery:
    """Parse one model's SQL (BigQuery dialect); every problem names the model."""
    try:
        statements = sqlglot.parse(sql, read=SOURCE_DIALECT, error_level=ErrorLevel.RAISE)
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        where = f" (line {first.get('line')}, column {first.get('col')})" if first else ""
        description = first.get("description") or str(error).splitlines()[0]
        problem = f"SQL does not parse as BigQuery SQL{where}: {description}"
        raise model_error(name, problem) from None
    found = [statement for statement in statements if statement is not None]
    if len(found) != 1 or not isinstance(found[0], exp.Query):
        raise model_error(name, "SQL must be exactly one SELECT statement")
    query = found[0]
    ctes = frozenset(cte.alias_or_name for cte in query.find_all(exp.CTE))
    upstream: set[str] = set()
    for table in _table_refs(query, ctes, include_qualified=True):
        if table.args.get("db") or table.args.get("catalog"):
            raise model_error(
                name,
                f"table '{table.sql(dialect=SOURCE_DIALECT)}' is qualified: write table names "
                "alone (`FROM orders`); ferry reads them from the configured dataset on both "
                "engines",
            )
        upstream.add(table.name)
    return ModelQuery(name=name, query=query, upstream=frozenset(upstream), ctes=ctes, sql=sql)


def _table_refs(
    query: exp.Expr, ctes: frozenset[str], include_qualified: bool = False
) -> Iterator[exp.Table]:
    """Named tables the query reads; references to its own CTEs are not tables."""
    for table in list(query.find_all(exp.Table)):
        if not isinstance(table.this, exp.Identifier):
            continue  # a table function or UNNEST, not a stored table
        qualified = bool(table.args.get("db") or table.args.get("catalog"))
        if qualified and not include_qualified:
            continue
        if not qualified and table.name in ctes:
            continue
        yield table


def untranslatable(model: ModelQuery) -> list[str]:
    """What of the model's BigQuery SQL has no DuckDB translation (empty: it all has one)."""
    try:
        # every engine runs the SQL as sqlglot re-prints it from its own parse: that must work
        rendered = [
            (engine, model.render(engine.models.VALIDATION_WAREHOUSE)) for engine in all_engines()
        ]
    except UnsupportedError as error:
        return [line.strip() for line in str(error).splitlines() if line.strip()]
    return [problem for engine, sql in rendered for problem in engine.models.unknown_functions(sql)]


def check_translatable(model: ModelQuery) -> None:
    problems = untranslatable(model)
    if problems:
        raise model_error(
            model.name,
            "SQL cannot run on DuckDB (the embedded default): " + "; ".join(problems),
        )
