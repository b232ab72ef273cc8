"""Validate a pipelines file's models at start: every problem names the model."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.models.graph import ModelGraph
from core.model_spec import ModelSpec

if TYPE_CHECKING:
    from app.models.transpile import ModelQuery

RESERVED_PREFIXES = ("_dlt", "_ferry")
"""dlt's and ferry's own tables (`_dlt_loads`, `_ferry_runs`): a model must never replace them."""
CHILD_SEPARATOR = "__"
"""dlt names nested tables `<table>__<field>`; ferry's rejects are `<table>__rejects`."""


@dataclass(frozen=True)
class ModelSet:
    """The validated models of one pipelines file."""

    specs: Mapping[str, ModelSpec] = field(default_factory=dict)
    queries: Mapping[str, ModelQuery] = field(default_factory=dict)
    graph: ModelGraph = field(default_factory=lambda: ModelGraph.of({}))

    def __bool__(self) -> bool:
        return bool(self.specs)


def compile_models(
    specs: Sequence[ModelSpec], loaded_tables: Collection[str], base_dir: Path
) -> ModelSet:
    """Read, parse and check every model against the tables the pipelines load.

    Errors (ConfigError): SQL that does not parse or has no DuckDB translation, a table no
    pipeline loads and no model builds, a model named like a loaded table, a cycle.
    """
    if not specs:
        return ModelSet()
    # sqlglot and DuckDB load only for a file that declares models (a faster cold start)
    from app.models.transpile import check_translatable, model_error, parse_model

    names = {spec.name for spec in specs}
    queries: dict[str, ModelQuery] = {}
    for spec in specs:
        if spec.name.lower().startswith(RESERVED_PREFIXES):
            raise model_error(spec.name, "names starting with _dlt or _ferry are reserved")
        loaded = _loaded_table_named(spec.name, loaded_tables)
        if loaded is not None:
            # building the model would replace (drop) that table
            raise model_error(
                spec.name,
                f"a pipeline already loads a table of this name ('{loaded}' in the destination)",
            )
        if spec.name in queries:
            raise model_error(spec.name, "declared twice")
        query = parse_model(spec.name, _sql_of(spec, base_dir))
        check_translatable(query)
        for table in sorted(query.upstream):
            if not (table in names or _is_loaded(table, loaded_tables)):
                known = ", ".join(sorted(set(loaded_tables) | names)) or "none"
                raise model_error(
                    spec.name,
                    f"reads table '{table}', which no pipeline loads and no model builds "
                    f"(known: {known})",
                )
        if spec.materialization == "incremental" and not spec.unique_key:
            _check_appendable(spec.name, query, frozenset(names))
        queries[spec.name] = query
    graph = ModelGraph.of({name: query.upstream for name, query in queries.items()})
    return ModelSet(specs={spec.name: spec for spec in specs}, queries=queries, graph=graph)


def _check_appendable(name: str, query: ModelQuery, models: frozenset[str]) -> None:
    """Without unique_key new rows are appended, which is right only for a SELECT that can
    read the new loads alone (app/models/incremental.py)."""
    from app.models.incremental import reads_whole
    from app.models.transpile import model_error

    why = reads_whole(query, models)
    if why is not None:
        raise model_error(
            name,
            "materialization 'incremental' without unique_key appends the rows of new loads, "
            f"so its SELECT must read them alone (one loaded table, row by row), and {why}; "
            "give unique_key (its whole SELECT is then merged on every build) or use 'table'",
        )


def _sql_of(spec: ModelSpec, base_dir: Path) -> str:
    from app.models.transpile import model_error

    if spec.sql is not None:
        return spec.sql
    path = base_dir / str(spec.sql_file)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise model_error(spec.name, f"cannot read sql_file {path}: {error.strerror}") from None


def _is_loaded(table: str, loaded_tables: Collection[str]) -> bool:
    return table in loaded_tables or any(
        table.startswith(loaded + CHILD_SEPARATOR) for loaded in loaded_tables
    )


def _loaded_table_named(model: str, loaded_tables: Collection[str]) -> str | None:
    """The loaded table (or its nested, rejects or tombstones table) that `model` would be in
    the destination: names compare as dlt writes them (`AppRows` is `app_rows`), and
    case-insensitively (DuckDB's identifiers are)."""
    target = stored_name(model).lower()
    for table in loaded_tables:
        stored = stored_name(table).lower()
        if target == stored or target.startswith(stored + CHILD_SEPARATOR):
            return table
    return None


# dlt's snake_case naming (dlt.common.normalizers.naming.snake_case), without its length limit.
# Importing any dlt module runs `dlt/__init__` (0.4 s), which the service's start cannot
# afford; tests/models/test_compile.py pins this copy to dlt's own normalizer.
_REDUCE_ALPHABET = str.maketrans("+-*@|", "x_xal")
_NON_ALPHANUMERIC = re.compile(r"[^a-zA-Z\d_]+")
_BREAK_BEFORE_WORD = re.compile("([^_])([A-Z][a-z]+)")
_BREAK_BEFORE_UPPER = re.compile("([a-z0-9])([A-Z])")
_LEADING_DIGITS = re.compile(r"^\d+")
_UNDERSCORES = re.compile("__+")


def stored_name(path: str) -> str:
    """A table name (`parent__child` path) as dlt's default naming writes it to the
    destination, as `NamingConvention().normalize_path(path)` returns it."""
    parts = [part for part in path.split(CHILD_SEPARATOR) if part.strip()]
    return CHILD_SEPARATOR.join(_stored_identifier(part) for part in parts)


def _stored_identifier(identifier: str) -> str:
    name = _NON_ALPHANUMERIC.sub("_", identifier.strip().translate(_REDUCE_ALPHABET))
    name = _BREAK_BEFORE_WORD.sub(r"\1_\2", name)
    name = _BREAK_BEFORE_UPPER.sub(r"\1_\2", name).lower()
    if _LEADING_DIGITS.match(name):
        name = "_" + name
    stripped = name.rstrip("_")
    name = stripped + "x" * (len(name) - len(stripped))
    return _UNDERSCORES.sub("_", name)
