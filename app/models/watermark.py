"""What an incremental model's last build read, and whether reading only newer loads is still
right.

Per model, `_ferry_model_loads` keeps the newest upstream load id the last build read (its
high-water mark), how many upstream rows and committed loads (`_dlt_loads`) were at or below
it then, the newest `_ferry_load_id` the build left in the model, and the hash of the model's
definition. A later build reads only rows above the mark, unless one of these moved:

- rows at or below the mark changed in number: deleted (CDC hard deletes, object deletes, a
  `replace` load) or replaced (a merge gives the new version a new load id and removes the
  old row); an append model would keep the old version, so the model is rebuilt whole;
- loads at or below the mark changed in number: a load that took its id before the last
  build committed after it (its rows sit below the mark and would never be read);
- the model's newest `_ferry_load_id` is not the recorded one: a build committed its rows but
  not its record (the rows and the record are two statements), so the record is stale;
- the definition (SQL, unique_key) changed; or a full refresh was asked for.

The table is shared by every pipeline of the dataset, so it only gets rows appended (on
BigQuery streamed: a MERGE or DELETE per build was DML in the table's queue, 2 running and 20
queued, and rows still in the streaming buffer cannot be changed): a build's mark is a new
row, a forgotten mark a row without upstream, and the newest row per model (by the second its
`run_id` starts with) counts. A table from before, one row per model, reads the same.

Reading the upstream's figures and building happen under the upstream table's writer (and
the model's), so no load commits between the two. Statements are written in BigQuery SQL and
transpiled by sqlglot for the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp

from app.destinations.warehouse import Relation, Warehouse
from app.models.incremental import MODEL_LOAD_ID_COLUMN
from core.lineage import LOAD_ID_COLUMN, MODEL_LOADS_TABLE

LOADS_TABLE = "_dlt_loads"
RUN_SECOND = len("20261206T104727")
"""The part of a run id that says when it started (request.new_run_id): rows appended to
the model records are ordered by it."""


@dataclass(frozen=True)
class Watermark:
    """What an incremental model's last build read."""

    upstream: str
    load_id: str
    """The newest upstream load id the build read (its high-water mark)."""
    upstream_rows: int
    """Upstream rows at or below `load_id` then."""
    loads: int
    """Committed loads (`_dlt_loads`) at or below `load_id` then."""
    model_load_id: str
    """The newest `_ferry_load_id` in the model after the build ('' if none)."""
    definition: str


@dataclass(frozen=True)
class UpstreamNow:
    """The upstream's figures at the start of a build, against the last build's mark."""

    newest: str | None
    rows: int
    rows_at_mark: int
    loads_at_mark: int
    loads_at_newest: int
    model_newest: str | None


def whole_because(
    mark: Watermark | None, now: UpstreamNow, definition: str, full_refresh: bool
) -> str | None:
    """Why this build must read the upstream whole (None: only rows above the mark)."""
    if full_refresh:
        return "a full refresh was asked for"
    if mark is None:
        return "it has no record of a previous build"
    if mark.definition != definition:
        return "its SQL or unique_key changed"
    if (now.model_newest or "") != mark.model_load_id:
        return "its table changed since its last recorded build"
    if now.rows_at_mark != mark.upstream_rows:
        return (
            f"rows of {mark.upstream} loaded before its last build were deleted or replaced since"
        )
    if now.loads_at_mark != mark.loads:
        return "a load of an id older than its last build committed since"
    return None


class Watermarks:
    """Reads and writes `_ferry_model_loads` and the upstream's figures through `run`."""

    def __init__(
        self,
        run: Callable[[str], list[tuple[Any, ...]]],
        warehouse: Warehouse,
        kind: Callable[[str], Relation | None],
        append: Callable[[str, list[dict[str, Any]]], bool],
    ) -> None:
        self._run = run
        self._append = append
        """Appends rows without DML (False: the engine cannot, so they are INSERTed)."""
        self._warehouse = warehouse
        self._kind = kind
        self._source = Warehouse("bigquery", warehouse.dataset, warehouse.catalog)
        self._recorded: bool | None = None
        """Whether `_ferry_model_loads` exists (looked up once per build: a metadata call)."""

    def _exists(self) -> bool:
        if self._recorded is None:
            self._recorded = self._kind(MODEL_LOADS_TABLE) is not None
        return self._recorded

    def read(self, model: str) -> Watermark | None:
        if not self._exists():
            return None
        # the newest row (a run id starts with its second); within one second a forgotten
        # mark (at worst one more whole build), then the higher mark
        rows = self._query(
            "SELECT upstream, load_id, upstream_rows, loads, model_load_id, definition "  # noqa: S608
            f"FROM {self._name(MODEL_LOADS_TABLE)} WHERE model = {_literal(model)} "
            f"ORDER BY SUBSTR(run_id, 1, {RUN_SECOND}) DESC, upstream = '' DESC, load_id DESC "
            "LIMIT 1"
        )
        if not rows or rows[0][0] == "":
            return None
        upstream, load_id, upstream_rows, loads, model_load_id, definition = rows[0]
        return Watermark(
            str(upstream),
            str(load_id),
            int(upstream_rows),
            int(loads),
            str(model_load_id or ""),
            str(definition),
        )

    def upstream_now(self, upstream: str, mark: Watermark | None, model: str | None) -> UpstreamNow:
        """`model`: read its newest `_ferry_load_id` too (None: it is not read)."""
        table, loads = self._name(upstream), self._name(LOADS_TABLE)
        at = _literal(mark.load_id if mark else "")
        # names quoted by sqlglot, values by _literal
        newest = f"(SELECT MAX({LOAD_ID_COLUMN}) FROM {table})"  # noqa: S608
        model_newest = "NULL"
        if model:
            model_newest = f"(SELECT MAX({MODEL_LOAD_ID_COLUMN}) FROM {self._name(model)})"  # noqa: S608
        (row,) = self._query(
            f"SELECT {newest}, (SELECT COUNT(*) FROM {table}), "  # noqa: S608 - quoted by sqlglot
            f"(SELECT COUNTIF({LOAD_ID_COLUMN} <= {at}) FROM {table}), "
            f"(SELECT COUNT(*) FROM {loads} WHERE load_id <= {at}), "
            f"(SELECT COUNT(*) FROM {loads} WHERE load_id <= {newest}), {model_newest}"
        )
        latest, rows, rows_at_mark, loads_at_mark, loads_at_newest, in_model = row
        return UpstreamNow(
            None if latest is None else str(latest),
            int(rows or 0),
            int(rows_at_mark or 0),
            int(loads_at_mark or 0),
            int(loads_at_newest or 0),
            None if in_model is None else str(in_model),
        )

    def forget(self, model: str, run_id: str) -> None:
        """Drop the model's mark, if it has one: a row saying so (no upstream)."""
        if self._exists():
            forgotten = Watermark(
                upstream="", load_id="", upstream_rows=0, loads=0, model_load_id="", definition=""
            )
            self.write(model, forgotten, run_id)

    def write(self, model: str, mark: Watermark, run_id: str) -> None:
        row: dict[str, Any] = {
            "model": model,
            "upstream": mark.upstream,
            "load_id": mark.load_id,
            "upstream_rows": mark.upstream_rows,
            "loads": mark.loads,
            "model_load_id": mark.model_load_id,
            "definition": mark.definition,
            "run_id": run_id,
        }
        table = self._name(MODEL_LOADS_TABLE)
        if self._exists():
            if self._append(MODEL_LOADS_TABLE, [row]):
                return
        else:  # the first mark of the dataset: the one INSERT (DML) the table ever gets
            self._query(
                f"CREATE TABLE IF NOT EXISTS {table} (model STRING, upstream STRING, "
                "load_id STRING, upstream_rows INT64, loads INT64, model_load_id STRING, "
                "definition STRING, run_id STRING)"
            )
            self._recorded = True
        values = ", ".join(
            str(value) if isinstance(value, int) else _literal(value) for value in row.values()
        )
        self._query(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({values})")  # noqa: S608

    def _name(self, name: str) -> str:
        return self._source.name(name)

    def _query(self, bigquery_sql: str) -> list[tuple[Any, ...]]:
        (sql,) = sqlglot.transpile(
            bigquery_sql,
            read="bigquery",
            write=self._warehouse.dialect,
            unsupported_level=sqlglot.ErrorLevel.RAISE,
        )
        return self._run(sql)


def _literal(value: str) -> str:
    return exp.Literal.string(value).sql(dialect="bigquery")
